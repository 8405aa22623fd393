use super::*;

#[test]
fn challenges_parse() {
    let (scheme, params) = parse_challenge(
        r#"Bearer realm="http://127.0.0.1:1/token",service="registry",scope="repository:a/b:pull,push""#,
    );
    assert_eq!(scheme, "Bearer");
    assert_eq!(
        params,
        vec![
            ("realm".into(), "http://127.0.0.1:1/token".into()),
            ("service".into(), "registry".into()),
            ("scope".into(), "repository:a/b:pull,push".into()),
        ]
    );
    let (scheme, params) = parse_challenge(r#"Basic realm="criox-test""#);
    assert_eq!(scheme, "Basic");
    assert_eq!(params[0].1, "criox-test");
}

#[test]
fn redirects_keep_the_repository_the_host_and_the_scheme() {
    let origin: Uri = "https://reg.io/v2/team/app/manifests/1".parse().unwrap();
    let check = |next: &str, manifest: bool| {
        check_redirect(&origin, "/v2/team/app/", manifest, &next.parse().unwrap())
    };
    assert_eq!(
        check("https://reg.io/v2/team/app/manifests/2", true),
        Ok(())
    );
    assert_eq!(check("https://cdn.example/blob?sig=1", false), Ok(()));
    assert_eq!(
        check("https://reg.io/v2/evil/app/manifests/1", true),
        Err("it leads to another repository")
    );
    assert_eq!(
        check("https://reg.io/v2/_catalog", false),
        Err("it leads to another repository")
    );
    assert_eq!(
        check("https://reg.io/v2/team/app/../../evil/blobs/x", false),
        Err("it leads to another repository")
    );
    assert_eq!(
        check("https://other.io/v2/team/app/manifests/1", true),
        Err("a manifest comes from the registry itself")
    );
    assert_eq!(
        check("http://reg.io/v2/team/app/blobs/x", false),
        Err("it leaves https")
    );
    assert_eq!(
        check("http://cdn.example/blob", false),
        Err("it leaves https")
    );
    let plain: Uri = "http://127.0.0.1:5000/v2/a/blobs/x".parse().unwrap();
    assert!(!same_origin(&plain, &origin));
    let downgraded: Uri = "http://reg.io/v2/team/app/manifests/1".parse().unwrap();
    assert!(
        !same_origin(&downgraded, &origin),
        "credentials would go over http"
    );
}

#[test]
fn query_values_are_encoded() {
    assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
}

#[test]
fn loopback_hosts_are_recognised_with_and_without_ports() {
    for host in [
        "localhost",
        "LOCALHOST:5000",
        "127.0.0.1",
        "127.3.2.1:443",
        "[::1]:5000",
        "[::1]",
    ] {
        assert!(is_loopback_host(host), "{host}");
    }
    for host in [
        "registry.example",
        "10.0.0.1:5000",
        "localhost.example:5000",
        "[2001:db8::1]:5000",
        "127.0.0.1.example",
    ] {
        assert!(!is_loopback_host(host), "{host}");
    }
}
