//! Helpers for the services tests: free ports, a tiny HTTP server, and
//! views of a daemon's services (`sc service ls --json`, log files, cgroups).

use crate::TestDaemon;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0,
/// then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

const HTTP_SERVER: &str = r#"
import http.server, os, sys, time
port = int(sys.argv[1])
flag = sys.argv[2] if len(sys.argv) > 2 else None
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if flag and os.path.exists(flag):
            # Stop answering: hold the connection without a reply.
            time.sleep(30)
            return
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class S(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
print("serving on %d pid %d" % (port, os.getpid()), flush=True)
S(("127.0.0.1", port), H).serve_forever()
"#;

/// Write a small HTTP server into `dir` and return its path. Run it as
/// `python3 SCRIPT PORT [FLAG]`: it answers `GET` with 200 on 127.0.0.1:PORT
/// until FLAG exists, then stops answering (holds each request unanswered).
pub fn http_server_script(dir: &Path) -> PathBuf {
    let p = dir.join("http_server.py");
    std::fs::write(&p, HTTP_SERVER).expect("write http_server.py");
    p
}

impl TestDaemon {
    /// `sc service ls --json`, which must succeed.
    #[track_caller]
    pub fn services(&self) -> Vec<Value> {
        let out = self.sc(&["service", "ls", "--json"]);
        out.assert_success();
        match out.json() {
            Value::Array(s) => s,
            other => panic!("sc service ls --json is not an array: {other}\n{out}"),
        }
    }

    /// The service `name` in `sc service ls --json`, if listed.
    #[track_caller]
    pub fn service(&self, name: &str) -> Option<Value> {
        self.services().into_iter().find(|s| s["name"] == name)
    }

    /// The service `name`, which must be listed.
    #[track_caller]
    pub fn service_view(&self, name: &str) -> Value {
        self.service(name)
            .unwrap_or_else(|| panic!("service {name} not in sc service ls: {:?}", self.services()))
    }

    /// Where the service's log files live (`<state_dir>/logs`).
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir().join("logs")
    }

    /// The service's log files that exist, oldest first
    /// (`NAME.log.K`, …, `NAME.log.1`, `NAME.log`).
    pub fn service_log_files(&self, name: &str) -> Vec<PathBuf> {
        let dir = self.logs_dir();
        let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let f = e.file_name().to_string_lossy().into_owned();
                        let k = f.strip_prefix(&format!("{name}.log."))?.parse().ok()?;
                        Some((k, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
        let cur = dir.join(format!("{name}.log"));
        if cur.exists() {
            files.push(cur);
        }
        files
    }

    /// Everything in the service's log files, oldest first.
    pub fn service_log(&self, name: &str) -> String {
        self.service_log_files(name)
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    /// The service's cgroup dirs that exist now (`<subtree>/services/NAME`).
    #[track_caller]
    pub fn service_cgroups(&self, name: &str) -> Vec<PathBuf> {
        self.subtrees()
            .into_iter()
            .map(|s| s.join("services").join(name))
            .filter(|p| p.is_dir())
            .collect()
    }
}
