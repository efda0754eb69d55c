//! With `tls:` in the config the listener speaks HTTPS only.

use crate::support::{fixture, Server, TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn with_tls_configured_the_api_answers_over_https_and_not_over_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert_file.clone(), key_file.clone());
    let server = Server::start_with(move |config| {
        config.tls = Some(laojun::config::Tls {
            cert_file: c,
            key_file: k,
        });
    })
    .await;
    let https_url = server.url.replace("http://", "https://");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client
        .post(format!("{https_url}/api/v1/alerts"))
        .bearer_auth(TOKEN)
        .body(fixture("firing-single.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        client
            .get(format!("{https_url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("{}/healthz", server.url))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    // A client that does not trust the certificate is refused.
    assert!(reqwest::Client::new()
        .get(format!("{https_url}/healthz"))
        .send()
        .await
        .is_err());
    server.stop().await;
}
