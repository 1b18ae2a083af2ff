//! Protected routes end to end: API tokens from the CLI, role bindings, Cedar
//! decisions through the proxy, identity headers to the upstream, revocation.

use crate::support::{
    EchoUpstream, Gateway, KeptAlive, Setup, admin_cli, header_values, raw_exchange, raw_get,
    route, wait_for_status,
};

const ROUTE_EXTRA: &str = "access = \"protected\"\nresource = 'App::\"app\"'";

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_and_policies_decide_protected_routes() {
    let upstream = EchoUpstream::start().await;
    let prepared = Gateway::prepare(Setup {
        policy: "bindings = \"bindings.json\"\nenvironment = \"dev\"".into(),
        routes: route("app", "*", "/", &upstream.url(), "")
            .replace("access = \"public\"", ROUTE_EXTRA),
        ..Setup::default()
    });
    let organization = prepared.cli(&["org", "create", "acme"]);
    let workspace = prepared.cli(&[
        "workspace",
        "create",
        "--organization",
        &organization,
        "ops",
        "--environment",
        "dev",
    ]);
    let operator = prepared.cli(&[
        "user",
        "add",
        "--organization",
        &organization,
        "olga@acme.test",
    ]);
    let analyst = prepared.cli(&[
        "user",
        "add",
        "--organization",
        &organization,
        "andy@acme.test",
    ]);
    let stranger = prepared.cli(&[
        "user",
        "add",
        "--organization",
        &organization,
        "sam@acme.test",
    ]);
    let token = |user: &str, name: &str| {
        prepared.cli(&[
            "token",
            "create",
            "--workspace",
            &workspace,
            "--user",
            user,
            "--name",
            name,
        ])
    };
    let operator_token = token(&operator, "olga-ci");
    let analyst_token = token(&analyst, "andy-ci");
    let stranger_token = token(&stranger, "sam-ci");
    std::fs::write(
        prepared.dir.path().join("bindings.json"),
        format!(
            "{{\"entities\": [{{\"type\": \"App\", \"id\": \"app\"}}], \"bindings\": [\
             {{\"user\": \"{operator}\", \"role\": \"operator\", \"scope\": {{\"type\": \"App\", \"id\": \"app\"}}}},\
             {{\"user\": \"{analyst}\", \"role\": \"analyst\", \"scope\": {{\"type\": \"App\", \"id\": \"app\"}}}}]}}"
        ),
    )
    .unwrap();
    let gateway = prepared.start().await;

    // No credential, a malformed one, a well-formed unknown one: 401, nothing forwarded.
    assert_eq!(
        raw_get(gateway.addr, "app.test", "/", &[]).await.status,
        401
    );
    assert_eq!(
        raw_get(
            gateway.addr,
            "app.test",
            "/",
            &["Authorization: Bearer nope"]
        )
        .await
        .status,
        401
    );
    let unknown = format!("pcl_{}_{}", workspace.replace('-', ""), "0".repeat(64));
    assert_eq!(
        raw_get(gateway.addr, "app.test", "/", &[&bearer(&unknown)])
            .await
            .status,
        401
    );
    // Authenticated but no role on the app: the policy denies.
    let denied = raw_get(gateway.addr, "app.test", "/", &[&bearer(&stranger_token)]).await;
    assert_eq!(denied.status, 403);
    assert!(
        denied.body.contains("\"error\":\"denied\""),
        "{}",
        denied.body
    );
    // Analysts read but do not write.
    assert_eq!(
        raw_get(gateway.addr, "app.test", "/", &[&bearer(&analyst_token)])
            .await
            .status,
        200
    );
    let post = format!(
        "POST / HTTP/1.1\r\nHost: app.test\r\n{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        bearer(&analyst_token)
    );
    assert_eq!(
        raw_exchange(gateway.addr, post.as_bytes()).await.status,
        403
    );
    assert_eq!(upstream.count(), 1);

    // The operator gets through; the upstream learns who, never the token, and a
    // forged identity header from the client is replaced.
    let response = raw_get(
        gateway.addr,
        "app.test",
        "/",
        &[
            &bearer(&operator_token),
            &format!("X-Portcullis-User: {analyst}"),
        ],
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = upstream.seen();
    let headers = &seen.last().unwrap().headers;
    assert_eq!(
        header_values(headers, "x-portcullis-user"),
        [operator.as_str()]
    );
    assert_eq!(
        header_values(headers, "x-portcullis-auth-method"),
        ["api_token"]
    );
    assert_eq!(header_values(headers, "x-portcullis-roles"), ["operator"]);
    assert_eq!(
        header_values(headers, "x-portcullis-workspace"),
        [workspace.as_str()]
    );
    assert_eq!(
        header_values(headers, "x-portcullis-email"),
        ["olga@acme.test"]
    );
    assert!(
        headers.get("authorization").is_none(),
        "the gateway's token reached the upstream"
    );

    // The signed assertion verifies with an independent JWT library against the
    // published key set, names the user and the route, and is reused while fresh.
    let assertion = header_values(headers, "x-portcullis-assertion")
        .pop()
        .unwrap();
    let jwks = raw_get(gateway.addr, "app.test", "/.portcullis/jwks.json", &[]).await;
    let jwks: serde_json::Value = serde_json::from_str(&jwks.body).unwrap();
    let jwk = &jwks["keys"][0];
    let key = jsonwebtoken::DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["app"]);
    validation.set_issuer(&["portcullis"]);
    let verified =
        jsonwebtoken::decode::<serde_json::Value>(&assertion, &key, &validation).unwrap();
    assert_eq!(verified.header.kid.as_deref(), jwk["kid"].as_str());
    assert_eq!(verified.claims["sub"], operator.as_str());
    assert_eq!(verified.claims["email"], "olga@acme.test");
    let lifetime =
        verified.claims["exp"].as_u64().unwrap() - verified.claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 60, "{lifetime}");
    let mut wrong_audience = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    wrong_audience.set_audience(&["another-app"]);
    assert!(jsonwebtoken::decode::<serde_json::Value>(&assertion, &key, &wrong_audience).is_err());
    let again = raw_get(
        gateway.addr,
        "app.test",
        "/",
        &[&bearer(&operator_token), "X-Portcullis-Assertion: forged"],
    )
    .await;
    assert_eq!(again.status, 200);
    let seen = upstream.seen();
    assert_eq!(
        header_values(&seen.last().unwrap().headers, "x-portcullis-assertion"),
        [assertion.as_str()],
        "a fresh assertion is reused, and a client's copy never passes"
    );

    // One kept-alive connection carrying several callers' tokens (a front proxy's pool):
    // each request is its own caller, whatever the connection remembered before.
    let mut connection = KeptAlive::open(gateway.addr).await;
    let mut kept_alive = async |token: &str| {
        connection
            .get("/", "authorization", &format!("Bearer {token}"))
            .await
    };
    let last_user = || {
        let seen = upstream.seen();
        header_values(&seen.last().unwrap().headers, "x-portcullis-user")
    };
    for _ in 0..2 {
        assert_eq!(kept_alive(&operator_token).await, 200);
        assert_eq!(last_user(), [operator.as_str()]);
        assert_eq!(kept_alive(&operator_token).await, 200);
        assert_eq!(kept_alive(&stranger_token).await, 403);
        assert_eq!(kept_alive(&unknown).await, 401);
        assert_eq!(kept_alive(&analyst_token).await, 200);
        assert_eq!(last_user(), [analyst.as_str()]);
    }
    assert_eq!(kept_alive(&operator_token).await, 200);

    // Revocation from the CLI takes effect within the token cache's lifetime.
    let tokens = admin_cli(
        &gateway.config,
        &["token", "list", "--workspace", &workspace],
    );
    let operator_token_id = tokens
        .lines()
        .find(|line| line.contains("olga-ci"))
        .and_then(|line| line.split('\t').next())
        .unwrap()
        .to_owned();
    admin_cli(
        &gateway.config,
        &[
            "token",
            "revoke",
            "--workspace",
            &workspace,
            &operator_token_id,
        ],
    );
    let status = wait_for_status(gateway.addr, "/", &bearer(&operator_token), 401).await;
    assert_eq!(status, 401, "a revoked token kept working");
    // The kept-alive connection remembered the operator's token: it learns of the
    // revocation within the same lifetime.
    let mut status = 0;
    for _ in 0..100 {
        status = kept_alive(&operator_token).await;
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 401,
        "a revoked token kept working on a kept-alive connection"
    );

    // Role bindings in the store count too: granting the stranger a role lets them in
    // (within the binding cache's lifetime), revoking it shuts them out again.
    let grant = [
        "role",
        "grant",
        "--workspace",
        &workspace,
        "--user",
        &stranger,
        "--role",
        "analyst",
        "--scope",
        "App::\"app\"",
    ];
    admin_cli(&gateway.config, &grant);
    let listed = admin_cli(
        &gateway.config,
        &[
            "role",
            "list",
            "--workspace",
            &workspace,
            "--user",
            &stranger,
        ],
    );
    assert_eq!(listed.trim(), "analyst\tApp::\"app\"");
    let stranger_bearer = bearer(&stranger_token);
    let until = |expected: u16| wait_for_status(gateway.addr, "/", &stranger_bearer, expected);
    assert_eq!(
        until(200).await,
        200,
        "a role granted in the store never applied"
    );
    let revoke = [
        "role",
        "revoke",
        "--workspace",
        &workspace,
        "--user",
        &stranger,
        "--role",
        "analyst",
        "--scope",
        "App::\"app\"",
    ];
    admin_cli(&gateway.config, &revoke);
    assert_eq!(
        until(403).await,
        403,
        "a role revoked in the store kept working"
    );

    // Disabling a user ends what acts as them: their API token stops working.
    admin_cli(
        &gateway.config,
        &[
            "user",
            "disable",
            "--organization",
            &organization,
            "andy@acme.test",
        ],
    );
    let status = wait_for_status(gateway.addr, "/", &bearer(&analyst_token), 401).await;
    assert_eq!(status, 401, "a disabled user's token kept working");
    let sessions = admin_cli(
        &gateway.config,
        &[
            "session",
            "list",
            "--workspace",
            &workspace,
            "--user",
            &analyst,
        ],
    );
    assert!(sessions.is_empty(), "{sessions}");
}
