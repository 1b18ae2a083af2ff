//! Whatever an attacker posts as a SAMLResponse, the service provider never panics and
//! never accepts it: the fuzzer cannot sign with the IdP's key, so every input must be
//! refused, by the raw structural inspection, the envelope checks or samael's
//! signature verification (libxml2/xmlsec).
//!
//! The IdP's certificate is generated at start-up (rcgen, a throwaway self-signed
//! ECDSA certificate); no key material is checked in.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use portcullis_gateway::sso::saml::{PendingSaml, SamlProvider, SamlSettings, fuzz_inspect_raw};
use time::OffsetDateTime;

/// The fixed clock of every run (2026-01-01T00:00:00Z), so findings reproduce.
const NOW_UNIX: i64 = 1_767_225_600;
/// The request id the seeds answer (`InResponseTo`).
const REQUEST_ID: &str = "_fuzzrequest";

/// The same IdP twice: one provider that only takes solicited responses, one that also
/// takes IdP-initiated ones, so both of samael's configurations are exercised.
struct Providers {
    solicited: SamlProvider,
    unsolicited: SamlProvider,
}

static PROVIDERS: LazyLock<Providers> = LazyLock::new(|| {
    let certified = rcgen::generate_simple_self_signed(vec!["idp.fuzz.test".to_string()])
        .expect("test IdP certificate");
    let der = base64::engine::general_purpose::STANDARD.encode(certified.cert.der());
    let metadata = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.fuzz.test/metadata">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" WantAuthnRequestsSigned="false">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
        <ds:X509Data><ds:X509Certificate>{der}</ds:X509Certificate></ds:X509Data>
      </ds:KeyInfo>
    </md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.fuzz.test/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
    );
    let provider = |allow_idp_initiated: bool| {
        let settings = SamlSettings {
            id: "fuzz".to_string(),
            idp_metadata_file: Some(PathBuf::from("idp.xml")),
            idp_metadata_url: None,
            sp_entity_id: None,
            allow_idp_initiated,
            max_clock_skew_secs: 60,
            email_attribute: None,
            name_attribute: None,
            groups_attribute: Some("groups".to_string()),
            trusted_mfa_contexts: vec!["https://refeds.org/profile/mfa".to_string()],
            allowed_algorithms: vec![
                portcullis_gateway::sso::saml::SignatureAlgorithm::RsaSha256,
                portcullis_gateway::sso::saml::SignatureAlgorithm::EcdsaSha256,
            ],
            display_name: None,
        };
        SamlProvider::new(&settings, &metadata, "https://gw.fuzz.test").expect("fuzz provider")
    };
    Providers {
        solicited: provider(false),
        unsolicited: provider(true),
    }
});

fuzz_target!(|data: &[u8]| {
    let providers = &*PROVIDERS;
    let now = OffsetDateTime::from_unix_timestamp(NOW_UNIX).expect("fixed clock");

    // The structural pass on its own, on whatever text the bytes are.
    if let Ok(xml) = std::str::from_utf8(data)
        && let Ok(Some(name_id)) = fuzz_inspect_raw(xml)
    {
        // The NameID is only ever text the document contains, resolved references
        // aside: never longer than the document.
        assert!(name_id.len() <= xml.len(), "{name_id:?}");
    }

    // The whole consumer, as the ACS endpoint calls it: base64 of the posted bytes.
    let posted = base64::engine::general_purpose::STANDARD.encode(data);
    let pending = PendingSaml {
        provider: "fuzz".to_string(),
        request_id: REQUEST_ID.to_string(),
        created: now,
    };
    for (provider, pending) in [
        (&providers.solicited, Some(&pending)),
        (&providers.solicited, None),
        (&providers.unsolicited, None),
    ] {
        let outcome = provider.complete(&posted, pending, now);
        assert!(
            outcome.is_err(),
            "a forged response was accepted: {outcome:?}"
        );
    }

    // The bytes as the form field itself (whitespace, bad padding, non-base64).
    if let Ok(field) = std::str::from_utf8(data) {
        let outcome = providers.solicited.complete(field, Some(&pending), now);
        assert!(
            outcome.is_err(),
            "a forged response was accepted: {outcome:?}"
        );
    }
});
