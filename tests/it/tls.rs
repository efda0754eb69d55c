//! With `tls:` in the config the listener speaks HTTPS only.

use crate::support::{fixture, Server, TOKEN};
use laojun::client::ApiClient;

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
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let client = ApiClient::with_http(&https_url, Some(TOKEN.into()), trusting);
    client
        .post_alerts(fixture("firing-single.json"))
        .await
        .expect("the webhook answers over HTTPS");
    client.healthz().await.expect("/healthz answers over HTTPS");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = ApiClient::new(&server.url, None).healthz().await;
    assert!(plain.is_err(), "{plain:?}");
    // A client that does not trust the certificate is refused.
    let untrusting = ApiClient::new(&https_url, None).healthz().await;
    assert!(
        matches!(untrusting, Err(laojun::client::ClientError::Connect { .. })),
        "{untrusting:?}"
    );
    server.stop().await;
}
