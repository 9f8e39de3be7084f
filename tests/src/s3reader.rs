//! A long-lived S3 reader, for tests that look at a bucket hundreds of times: after every
//! kill of a crash test, and while a run goes, to kill it mid-upload.
//!
//! The `aws` CLI behind [`crate::Garage::list_keys`] costs about a second a call (Python
//! starting and importing botocore); here one `python3` process with botocore, the library
//! under the `aws` CLI, answers request after request on a pipe in milliseconds. It is as
//! independent of walpipe as the CLI: it shares no code with wal-store's client.
//!
//! It only reads: object listings (key, size, ETag), the multipart uploads in progress
//! (with how many parts each has received; one completed between the two requests is left
//! out), and object downloads.
//!
//! The protocol is one JSON object a line each way; the script is below, in
//! `SCRIPT`. botocore comes from the barman-cloud virtualenv that
//! `scripts/install-test-deps` makes (`<cache>/barman-cloud-venv`, `barman[cloud]` pulls
//! in boto3): whatever `python3` is first on PATH may not have it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use crate::cloud::Garage;
use crate::hermetic::clean_cloud_command;

/// The reader: requests on stdin, one JSON answer a line on stdout (`{"error": ...}` when a
/// request failed). Path-style addressing, as with every S3-compatible endpoint; botocore's
/// standard retries (3 attempts), so that a loaded test machine does not fail a test.
const SCRIPT: &str = r#"
import json, os, sys
import botocore.session
from botocore.config import Config

endpoint, bucket = sys.argv[1], sys.argv[2]
client = botocore.session.get_session().create_client(
    "s3", endpoint_url=endpoint, region_name=os.environ["AWS_REGION"],
    config=Config(s3={"addressing_style": "path"},
                  retries={"mode": "standard", "max_attempts": 3}))

def objects(prefix):
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            found.append({"key": o["Key"], "size": o["Size"], "etag": o["ETag"]})
    return {"objects": found}

def uploads(prefix):
    found = []
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for u in page.get("Uploads", []):
            try:
                parts = client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
            except client.exceptions.NoSuchUpload:
                continue  # completed (or aborted) since the listing
            parts = parts.get("Parts", [])
            found.append({"key": u["Key"], "id": u["UploadId"], "parts": len(parts),
                          "bytes": sum(p["Size"] for p in parts)})
    return {"uploads": found}

def get(key, to):
    answer = client.get_object(Bucket=bucket, Key=key)
    with open(to, "wb") as out:
        for chunk in answer["Body"].iter_chunks(1 << 20):
            out.write(chunk)
    return {"etag": answer["ETag"], "size": answer["ContentLength"]}

for line in sys.stdin:
    request = json.loads(line)
    try:
        op = request["op"]
        if op == "objects":
            answer = objects(request["prefix"])
        elif op == "uploads":
            answer = uploads(request["prefix"])
        elif op == "get":
            answer = get(request["key"], request["to"])
        else:
            answer = {"error": "unknown op " + op}
    except Exception as e:
        answer = {"error": type(e).__name__ + ": " + str(e)}
    print(json.dumps(answer), flush=True)
"#;

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag, quotes included: it changes when the object is replaced.
    pub etag: String,
}

/// A multipart upload begun and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The key it would create.
    pub key: String,
    /// Its upload id.
    pub id: String,
    /// Parts received so far.
    pub parts: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// The reader process, on one bucket of one [`Garage`]; killed and reaped on drop.
#[derive(Debug)]
pub struct S3Reader {
    child: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
}

impl S3Reader {
    /// Starts a reader of `bucket` on `garage` (hermetic: only the server's key and
    /// endpoint).
    ///
    /// # Panics
    /// When the venv's `python3` cannot start, or botocore is missing.
    #[must_use]
    pub fn start(garage: &Garage, bucket: &str) -> Self {
        let mut cmd = Command::new(crate::wal_cache_dir().join("barman-cloud-venv/bin/python3"));
        clean_cloud_command(&mut cmd);
        let mut child = cmd
            .envs(garage.env())
            .args(["-u", "-c", SCRIPT])
            .arg(garage.endpoint())
            .arg(bucket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the barman-cloud venv's python3: {e} (scripts/install-test-deps)"
                )
            });
        let requests = child.stdin.take().expect("piped stdin");
        let answers = BufReader::new(child.stdout.take().expect("piped stdout"));
        S3Reader {
            child,
            requests,
            answers,
        }
    }

    /// Sends `request`, returns the answer; panics on `{"error": ...}`.
    fn ask(&mut self, request: &Value) -> Value {
        writeln!(self.requests, "{request}").expect("write to the S3 reader");
        let mut line = String::new();
        let read = self
            .answers
            .read_line(&mut line)
            .expect("read from the S3 reader");
        assert!(
            read > 0,
            "the S3 reader exited (is botocore installed? scripts/install-test-deps): {:?}",
            self.child.try_wait()
        );
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("S3 reader answered {line:?}: {e}"));
        if let Some(error) = answer.get("error") {
            panic!("S3 reader: {request}: {error}");
        }
        answer
    }

    /// The objects under `prefix`, by key.
    #[must_use]
    pub fn objects(&mut self, prefix: &str) -> Vec<S3Object> {
        let answer = self.ask(&json!({"op": "objects", "prefix": prefix}));
        let mut objects: Vec<S3Object> = answer["objects"]
            .as_array()
            .expect("a list of objects")
            .iter()
            .map(|o| S3Object {
                key: o["key"].as_str().expect("a key").to_owned(),
                size: o["size"].as_u64().expect("a size"),
                etag: o["etag"].as_str().expect("an ETag").to_owned(),
            })
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects
    }

    /// The multipart uploads in progress under `prefix`, by key.
    #[must_use]
    pub fn uploads(&mut self, prefix: &str) -> Vec<Upload> {
        let answer = self.ask(&json!({"op": "uploads", "prefix": prefix}));
        let mut uploads: Vec<Upload> = answer["uploads"]
            .as_array()
            .expect("a list of uploads")
            .iter()
            .map(|u| Upload {
                key: u["key"].as_str().expect("a key").to_owned(),
                id: u["id"].as_str().expect("an upload id").to_owned(),
                parts: u["parts"].as_u64().expect("a part count") as usize,
                bytes: u["bytes"].as_u64().expect("a byte count"),
            })
            .collect();
        uploads.sort_by(|a, b| a.key.cmp(&b.key).then(a.id.cmp(&b.id)));
        uploads
    }

    /// Downloads object `key` to the file `to`; returns the ETag it was served with.
    pub fn get(&mut self, key: &str, to: &Path) -> String {
        let to = to.to_str().expect("a UTF-8 path");
        let answer = self.ask(&json!({"op": "get", "key": key, "to": to}));
        answer["etag"].as_str().expect("an ETag").to_owned()
    }
}

impl Drop for S3Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
