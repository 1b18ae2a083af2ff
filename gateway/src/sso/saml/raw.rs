//! A strict look at the raw SAMLResponse before samael sees it.
//!
//! samael verifies signatures with libxml2/xmlsec and reads the verified part with
//! quick-xml. Two parsers mean room for differentials, so this pass refuses anything a
//! real IdP response has no use for and attackers do: comments, CDATA, processing
//! instructions and DTDs (comment and CDATA splitting of a NameID keep a signature
//! valid while a careless reader truncates the value), more than one assertion or one
//! hidden away from its place (signature wrapping), encrypted assertions (no SP key),
//! undefined entities and absurd nesting. It also reads the few envelope values that
//! may be unsigned and that samael does not always check: Destination, InResponseTo
//! and the status code, plus the NameID text for a cross-check against samael's value.
//!
//! Nothing read here is trusted as identity: the identity comes from samael's
//! verified assertion only.

use quick_xml::XmlVersion;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::SamlError;

const PROTOCOL_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
/// Deeper than any real response (pysaml2, ADFS and Okta stay under 10 levels).
const MAX_DEPTH: usize = 32;

/// What the envelope says, read from the raw (possibly partly unsigned) XML.
#[derive(Debug, Default)]
pub(super) struct RawResponse {
    /// `Response/@Destination`.
    pub destination: Option<String>,
    /// `Response/@InResponseTo`.
    pub in_response_to: Option<String>,
    /// `Response/Status/StatusCode/@Value` (the top-level code only).
    pub status_code: Option<String>,
    /// The whole text of `Response/Assertion/Subject/NameID`.
    pub name_id: Option<String>,
}

/// Where in the document an element sits, as far as this pass cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Response,
    Status,
    StatusCode,
    Assertion,
    Subject,
    NameId,
    Other,
}

/// Reads `xml` and refuses every construct a SAML response has no business carrying.
pub(super) fn inspect(xml: &str) -> Result<RawResponse, SamlError> {
    let mut reader = NsReader::from_str(xml);
    let mut out = RawResponse::default();
    let mut stack: Vec<Place> = Vec::new();
    let mut root_seen = false;
    let mut n_assertions = 0usize;
    let mut n_name_ids = 0usize;
    loop {
        let (namespace, event) = reader
            .read_resolved_event()
            .map_err(|_| SamlError::Malformed("not well-formed XML"))?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SamlError::Malformed("elements nested too deeply"));
                }
                if stack.is_empty() && root_seen {
                    return Err(SamlError::Malformed("more than one root element"));
                }
                root_seen = true;
                let parent = stack.last().copied();
                let place = classify(&namespace, start, parent)?;
                match place {
                    Place::Response => {
                        out.destination = attribute(start, b"Destination")?;
                        out.in_response_to = attribute(start, b"InResponseTo")?;
                    }
                    Place::StatusCode => out.status_code = attribute(start, b"Value")?,
                    Place::Assertion => n_assertions += 1,
                    Place::NameId => {
                        n_name_ids += 1;
                        out.name_id = Some(String::new());
                    }
                    Place::Status | Place::Subject | Place::Other => {}
                }
                if parent == Some(Place::NameId) {
                    return Err(SamlError::NameId("NameID has child elements"));
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(place);
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(text) => {
                if stack.last() == Some(&Place::NameId) {
                    let text = text
                        .decode()
                        .map_err(|_| SamlError::Malformed("text is not UTF-8"))?;
                    push_name_id(&mut out, &text);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                if stack.last() == Some(&Place::NameId) {
                    push_name_id(&mut out, resolved.encode_utf8(&mut [0; 4]));
                }
            }
            Event::Decl(_) => {}
            Event::Comment(_) => return Err(SamlError::Malformed("XML comment")),
            Event::CData(_) => return Err(SamlError::Malformed("CDATA section")),
            Event::PI(_) => return Err(SamlError::Malformed("processing instruction")),
            Event::DocType(_) => return Err(SamlError::Malformed("document type declaration")),
            Event::Eof => break,
        }
    }
    if !root_seen || !stack.is_empty() {
        return Err(SamlError::Malformed("not well-formed XML"));
    }
    if n_assertions != 1 {
        return Err(SamlError::Malformed(
            "a response must carry exactly one assertion",
        ));
    }
    if n_name_ids > 1 {
        return Err(SamlError::NameId("more than one NameID"));
    }
    Ok(out)
}

/// Decides where an element sits, refusing elements that signal wrapping or
/// features this service provider does not support.
fn classify(
    namespace: &ResolveResult<'_>,
    start: &BytesStart<'_>,
    parent: Option<Place>,
) -> Result<Place, SamlError> {
    let local_name = start.local_name();
    let local = local_name.as_ref();
    let in_ns =
        |expected: &[u8]| matches!(namespace, ResolveResult::Bound(ns) if ns.as_ref() == expected);
    match (parent, local) {
        (None, b"Response") if in_ns(PROTOCOL_NS) => Ok(Place::Response),
        (None, _) => Err(SamlError::Malformed(
            "the root element is not a samlp:Response",
        )),
        (_, b"EncryptedAssertion") => Err(SamlError::Malformed(
            "encrypted assertions are not supported",
        )),
        (Some(Place::Response), b"Assertion") if in_ns(ASSERTION_NS) => Ok(Place::Assertion),
        (_, b"Assertion") => Err(SamlError::Malformed(
            "an assertion outside its place in the response",
        )),
        (Some(Place::Response), b"Status") if in_ns(PROTOCOL_NS) => Ok(Place::Status),
        (Some(Place::Status), b"StatusCode") if in_ns(PROTOCOL_NS) => Ok(Place::StatusCode),
        (Some(Place::Assertion), b"Subject") if in_ns(ASSERTION_NS) => Ok(Place::Subject),
        (Some(Place::Subject), b"NameID") if in_ns(ASSERTION_NS) => Ok(Place::NameId),
        (Some(Place::Subject), b"EncryptedID" | b"BaseID") => Err(SamlError::NameId(
            "only a plain NameID subject is supported",
        )),
        _ => Ok(Place::Other),
    }
}

/// An unqualified attribute's value, unescaped.
fn attribute(start: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, SamlError> {
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|_| SamlError::Malformed("malformed attribute"))?;
        if attribute.key.as_ref() == name {
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|_| SamlError::Malformed("malformed attribute value"))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// A character reference or one of XML's five predefined entities; anything else
/// would need a DTD, which responses may not have.
fn resolve_reference(reference: &BytesRef<'_>) -> Result<char, SamlError> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(character)) => Ok(character),
            _ => Err(SamlError::Malformed("invalid character reference")),
        };
    }
    let name: &[u8] = reference;
    match name {
        b"amp" => Ok('&'),
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"quot" => Ok('"'),
        b"apos" => Ok('\''),
        _ => Err(SamlError::Malformed("undefined entity reference")),
    }
}

fn push_name_id(out: &mut RawResponse, text: &str) {
    if let Some(name_id) = out.name_id.as_mut() {
        name_id.push_str(text);
    }
}
