//! Tests of the kit's object-storage servers (`walpipe_tests::cloud`): if these fail,
//! every end-to-end test against S3, Azure or GCS would fail for the wrong reason. They also
//! pin down server behaviour walpipe's design depends on (Garage and `If-None-Match`).

use std::net::{Ipv4Addr, TcpStream};
use std::process::Output;
use std::time::Instant;

use walpipe_tests::{Azurite, FakeGcs, Garage, GarageCluster, WorkDir};

/// Some bytes that are not text, so a lossy copy would show.
fn payload(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {endpoint}"))
}

fn port_open(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn azurite_stores_lists_and_returns_blobs() {
    let work = WorkDir::new();
    let t = Instant::now();
    let mut azurite = Azurite::start(work.path());
    eprintln!("azurite ready in {:.1?}", t.elapsed());
    let port = azurite.port();
    assert!(azurite.is_running());
    assert_eq!(azurite.container(), "wals");
    assert_eq!(
        azurite.blob_endpoint(),
        format!("http://127.0.0.1:{port}/devstoreaccount1")
    );
    let conn = azurite.connection_string();
    assert!(conn.contains(&format!(
        "BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )));
    let env = azurite.env();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "AZURE_STORAGE_CONNECTION_STRING",
            "AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_STORAGE_ACCOUNT_KEY"
        ]
    );

    // The container exists (an empty listing, not ContainerNotFound), and is empty.
    assert_eq!(azurite.list_blobs("wals", ""), vec![]);

    let data = payload(7, 1 << 20);
    let name = "pg/wals/0000000100000000/000000010000000000000001.zst";
    azurite.put_blob("wals", name, &data);
    azurite.put_blob("wals", "pg/wals/other", b"x");
    assert_eq!(
        azurite.list_blobs("wals", "pg/wals/0000"),
        vec![(name.to_owned(), data.len() as u64)]
    );
    assert_eq!(azurite.list_blobs("wals", "pg/").len(), 2);
    assert!(azurite.get_blob("wals", name) == data, "blob differs");

    azurite.create_container("second");
    azurite.create_container("second"); // exists: still fine
    assert_eq!(azurite.list_blobs("second", ""), vec![]);

    azurite.stop();
    assert!(!azurite.is_running());
    assert!(!port_open(port), "port {port} still open after stop");
}

#[test]
fn fake_gcs_stores_lists_and_returns_objects() {
    let work = WorkDir::new();
    let t = Instant::now();
    let mut gcs = FakeGcs::start(work.path());
    eprintln!("fake-gcs-server ready in {:.1?}", t.elapsed());
    let port = gcs.port();
    assert!(gcs.is_running());
    assert_eq!(gcs.bucket(), "wals");
    assert_eq!(gcs.endpoint(), format!("http://127.0.0.1:{port}"));
    let account = gcs.service_account();
    assert!(account.starts_with(work.path()), "{}", account.display());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&account).unwrap()).unwrap();
    assert_eq!(json["disable_oauth"], true);
    assert_eq!(json["gcs_base_url"], gcs.endpoint());
    assert_eq!(
        gcs.env(),
        [
            (
                "GOOGLE_SERVICE_ACCOUNT".to_owned(),
                account.to_string_lossy().into_owned()
            ),
            ("GOOGLE_BASE_URL".to_owned(), gcs.endpoint()),
        ]
    );

    // The bucket exists (an empty listing, not 404), and is empty.
    assert_eq!(gcs.list_objects("wals", ""), vec![]);
    let data = payload(5, 3 << 20);
    let name = "pg/wals/0000000100000000/000000010000000000000001.zst";
    gcs.put_object("wals", name, &data);
    gcs.put_object("wals", "pg/wals/00000002.history", b"x");
    gcs.put_object("wals", "pg/other", b"yz");
    assert_eq!(
        gcs.list_objects("wals", "pg/wals/0000"),
        vec![
            (name.to_owned(), data.len() as u64),
            ("pg/wals/00000002.history".to_owned(), 1)
        ]
    );
    assert_eq!(gcs.list_objects("wals", "pg/").len(), 3);
    assert!(gcs.get_object("wals", name) == data, "object differs");
    // The data is in the test's directory, one directory per bucket.
    assert!(gcs.dir().join("storage/wals").is_dir());

    gcs.create_bucket("second");
    gcs.create_bucket("second"); // exists: still fine
    assert_eq!(gcs.list_objects("second", ""), vec![]);
    gcs.put_object("second", "k", b"z");
    assert_eq!(gcs.list_objects("second", ""), vec![("k".to_owned(), 1)]);
    assert_eq!(gcs.list_objects("wals", "k"), vec![]);

    gcs.stop();
    assert!(!gcs.is_running());
    assert!(!port_open(port), "port {port} still open after stop");
}

/// `curl -sS ARGS` against the emulator: (HTTP status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    walpipe_tests::clean_cloud_command(&mut cmd);
    let out = cmd
        .args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {args:?}: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').expect("a status line");
    (code.trim().parse().expect("a status"), body.to_owned())
}

/// wal-store's GCS client (object_store) speaks GCS's XML API, as Google recommends for
/// interoperable clients. fake-gcs-server serves its reads (GET, HEAD, ListObjectsV2,
/// DELETE) but not its uploads: a PUT of an object answers 400 "invalid uploadType" (it
/// takes a PUT only as a signed-URL upload), and so does starting an XML multipart
/// upload (`POST ?uploads`); a listing of a bucket that does not exist answers 500 where
/// GCS answers 404. So the suite proves wal-store's reads, listings, deletes and
/// comparisons on GCS, and uploads only on S3 and Azure. Should a later fake-gcs-server
/// accept XML uploads, this test fails and GCS uploads can be proven too.
#[test]
fn fake_gcs_serves_the_xml_api_reads_but_not_its_uploads() {
    let work = WorkDir::new();
    let gcs = FakeGcs::start(work.path());
    let base = gcs.endpoint();
    gcs.put_object("wals", "pg/wals/a", b"hello");

    // Reads: GET, HEAD, ListObjectsV2.
    assert_eq!(
        curl(&[&format!("{base}/wals/pg/wals/a")]),
        (200, "hello".to_owned())
    );
    let (code, _) = curl(&["-I", &format!("{base}/wals/pg/wals/a")]);
    assert_eq!(code, 200);
    let (code, body) = curl(&[&format!("{base}/wals?list-type=2&prefix=pg/")]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<ListBucketResult>"), "{body}");
    assert!(body.contains("<Key>pg/wals/a</Key>"), "{body}");

    // Uploads: a create-only PUT, and the start of a multipart upload, are refused.
    let (code, body) = curl(&[
        "-X",
        "PUT",
        "-H",
        "x-goog-if-generation-match: 0",
        "--data-binary",
        "new",
        &format!("{base}/wals/pg/wals/b"),
    ]);
    assert_eq!(
        code, 400,
        "fake-gcs-server now takes XML API uploads: {body}"
    );
    assert!(body.contains("invalid uploadType"), "{body}");
    let (code, body) = curl(&["-X", "POST", &format!("{base}/wals/pg/wals/b?uploads")]);
    assert_eq!(
        code, 400,
        "fake-gcs-server now takes XML multipart uploads: {body}"
    );
    assert_eq!(
        gcs.list_objects("wals", ""),
        vec![("pg/wals/a".to_owned(), 5)]
    );

    // A missing bucket's listing: 500, not GCS's 404.
    let (code, body) = curl(&[&format!("{base}/nosuchbucket?list-type=2")]);
    assert_eq!(code, 500, "{body}");

    // Deletes.
    let (code, _) = curl(&["-X", "DELETE", &format!("{base}/wals/pg/wals/a")]);
    assert!(code == 200 || code == 204, "{code}");
    assert_eq!(gcs.list_objects("wals", ""), vec![]);
}

#[test]
fn garage_stores_lists_and_returns_objects() {
    let work = WorkDir::new();
    let t = Instant::now();
    let mut garage = Garage::start(work.path());
    eprintln!("garage ready in {:.1?}", t.elapsed());
    assert!(garage.is_running());
    assert_eq!(garage.bucket(), "wals");
    assert!(
        garage.access_key_id().starts_with("GK"),
        "{}",
        garage.access_key_id()
    );
    let endpoint = garage.endpoint();
    let env = garage.env();
    for (name, value) in [
        ("AWS_ACCESS_KEY_ID", garage.access_key_id()),
        ("AWS_SECRET_ACCESS_KEY", garage.secret_access_key()),
        ("AWS_REGION", "garage"),
        ("AWS_DEFAULT_REGION", "garage"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ] {
        assert!(
            env.iter().any(|(k, v)| k == name && v == value),
            "{name}={value} not in {env:?}"
        );
    }

    assert_eq!(garage.list_keys("wals", ""), vec![]);
    let data = payload(3, 3 << 20);
    let key = "pg/wals/0000000100000000/000000010000000000000002";
    garage.put_object("wals", key, &data);
    garage.put_object("wals", "pg/other", b"y");
    assert_eq!(
        garage.list_keys("wals", "pg/wals/"),
        vec![(key.to_owned(), data.len() as u64)]
    );
    assert_eq!(garage.list_keys("wals", "").len(), 2);
    assert!(garage.get_object("wals", key) == data, "object differs");

    // A second bucket the same key can use.
    garage.create_bucket("more");
    garage.put_object("more", "k", b"z");
    assert_eq!(garage.list_keys("more", ""), vec![("k".to_owned(), 1)]);

    let port = port_of(&endpoint);
    garage.stop();
    assert!(!garage.is_running());
    assert!(!port_open(port), "port {port} still open after stop");
}

/// Whether Garage honours S3 conditional writes decides how walpipe avoids overwriting an
/// archived segment. Garage 2.5 does NOT: it ignores `If-None-Match: *` on PutObject (the
/// second put of an existing key answers 200 and replaces the object; no 412
/// PreconditionFailed) and likewise ignores `If-Match` with a wrong ETag. Conditional
/// headers only work on reads (a HEAD with `If-None-Match: *` answers 304). Should a later
/// Garage start answering 412, this test fails and the design can change.
#[test]
fn garage_ignores_conditional_headers_on_put_object() {
    let work = WorkDir::new();
    let garage = Garage::start(work.path());
    let put = |body: &[u8], condition: [&str; 2]| {
        let file = work.join("body");
        std::fs::write(&file, body).unwrap();
        garage
            .aws()
            .args(["s3api", "put-object", "--bucket", "wals", "--key", "seg"])
            .args(condition)
            .arg("--body")
            .arg(&file)
            .output()
            .expect("run aws")
    };
    let out = put(b"first", ["--if-none-match", "*"]);
    assert!(
        out.status.success(),
        "first conditional put: {}",
        text(&out)
    );

    let out = put(b"second", ["--if-none-match", "*"]);
    assert!(
        out.status.success(),
        "Garage now rejects `If-None-Match: *` on an existing key: {}",
        text(&out)
    );
    assert_eq!(garage.get_object("wals", "seg"), b"second");

    let out = put(
        b"third",
        ["--if-match", "\"0123456789abcdef0123456789abcdef\""],
    );
    assert!(
        out.status.success(),
        "Garage now rejects `If-Match` with a wrong ETag: {}",
        text(&out)
    );
    assert_eq!(garage.get_object("wals", "seg"), b"third");

    // Reads do honour it: the object exists, so HEAD with `If-None-Match: *` is 304.
    let out = garage
        .aws()
        .args(["s3api", "head-object", "--bucket", "wals", "--key", "seg"])
        .args(["--if-none-match", "*"])
        .output()
        .expect("run aws");
    assert!(!out.status.success(), "HEAD If-None-Match: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(304)"),
        "HEAD If-None-Match: {}",
        text(&out)
    );
}

#[test]
fn garage_cluster_survives_one_node_down() {
    let work = WorkDir::new();
    let t = Instant::now();
    let mut cluster = GarageCluster::start(work.path());
    eprintln!("garage cluster ready in {:.1?}", t.elapsed());
    let bucket = cluster.bucket().to_owned();
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    assert_eq!(
        endpoints
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3
    );
    assert!(
        cluster
            .env(1)
            .contains(&("AWS_ENDPOINT_URL".to_owned(), endpoints[1].clone()))
    );

    let before = payload(1, 100_000);
    cluster.put_object(0, &bucket, "before", &before);
    assert!(cluster.get_object(2, &bucket, "before") == before);

    cluster.stop_node(2);
    assert!(!cluster.is_running(2));
    assert!(!port_open(port_of(&endpoints[2])));

    // Quorum 2 of 3: writes and reads through either remaining node.
    let during = payload(2, 100_000);
    cluster.put_object(0, &bucket, "during/0", &during);
    cluster.put_object(1, &bucket, "during/1", b"one");
    assert!(cluster.get_object(1, &bucket, "during/0") == during);
    assert_eq!(cluster.get_object(0, &bucket, "during/1"), b"one");
    assert!(cluster.get_object(1, &bucket, "before") == before);
    assert_eq!(
        cluster.list_keys(0, &bucket, ""),
        vec![
            ("before".to_owned(), 100_000),
            ("during/0".to_owned(), 100_000),
            ("during/1".to_owned(), 3)
        ]
    );

    let t = Instant::now();
    cluster.start_node(2);
    eprintln!("garage node 2 back in {:.1?}", t.elapsed());
    assert!(cluster.is_running(2));
    assert!(cluster.get_object(2, &bucket, "during/0") == during);
}
