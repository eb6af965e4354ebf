//! A real Prometheus (Debian's `prometheus` package) scraping one target every second,
//! with its data in a temporary directory; stopped and removed when dropped.
#![allow(dead_code)]

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    pub port: u16,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`, path /metrics) and waits until
    /// it is ready.
    pub async fn scraping(target: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "prometheus-test-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: ganeti-operator\n  static_configs:\n  - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = super::free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian's prometheus package) is installed");
        let p = Prometheus { child, dir, port };
        let started = Instant::now();
        loop {
            let ready = reqwest::get(format!("http://127.0.0.1:{port}/-/ready"))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return p;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "prometheus not ready:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The result of an instant query (`data.result`), or Prometheus' error.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let body: Value = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body.to_string());
        }
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
