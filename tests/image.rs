//! The operator's OCI image (`make image`, scripts/image), read from its archive: the
//! layout and every digest, the config (non-root user, entrypoint, labels, the name the
//! chart pulls), the layer's files (the static binary, the CA bundle, every noVNC module
//! the console page imports, passwd and group, no shell, owned by root), and the binary
//! from the layer runs. The Containerfile must describe the same image.
//!
//! `make test` builds the archive first; run alone, the test builds it when it is missing
//! (a minute or more). `IMAGE_ARCHIVE` names another archive.

use flate2::read::GzDecoder;
use ring::digest::{SHA256, digest};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const BINARY: &str = "usr/local/bin/ganeti-operator";
const NOVNC: &str = "usr/share/novnc";
/// The issue's budget for the whole image.
const MAX_LAYER_BYTES: usize = 40 << 20;

/// One entry of the layer.
struct Entry {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Vec<u8>,
}

struct Image {
    /// The archive's files: oci-layout, index.json, blobs/sha256/<digest>.
    files: BTreeMap<String, Vec<u8>>,
    index: Value,
    manifest: Value,
    config: Value,
    /// The layer as stored (gzip) and unpacked (tar).
    layer_gz: Vec<u8>,
    layer_tar: Vec<u8>,
    /// The layer's entries by path, without a leading "./" or a trailing "/".
    entries: BTreeMap<String, Entry>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap()
}

fn sha256(data: &[u8]) -> String {
    digest(&SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn archive_path() -> PathBuf {
    if let Some(path) = std::env::var_os("IMAGE_ARCHIVE") {
        return path.into();
    }
    let path = target_dir().join(format!(
        "image/ganeti-operator-{}.oci.tar",
        env!("CARGO_PKG_VERSION")
    ));
    if !path.exists() {
        let status = Command::new(root().join("scripts/image"))
            .current_dir(root())
            .env("CARGO_TARGET_DIR", target_dir())
            .status()
            .expect("running scripts/image");
        assert!(status.success(), "scripts/image failed: {status}");
    }
    path
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let path = archive_path();
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut files = BTreeMap::new();
        for entry in tar::Archive::new(file).entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                let name = entry.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                files.insert(name, data);
            }
        }
        let json = |name: &str| -> Value {
            serde_json::from_slice(files.get(name).unwrap_or_else(|| panic!("no {name}")))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let blob = |digest: &Value| -> String {
            let digest = digest.as_str().expect("a digest");
            format!("blobs/sha256/{}", digest.strip_prefix("sha256:").expect("sha256"))
        };
        let index = json("index.json");
        let manifest = json(&blob(&index["manifests"][0]["digest"]));
        let config = json(&blob(&manifest["config"]["digest"]));
        let layer_gz = files[&blob(&manifest["layers"][0]["digest"])].clone();
        let mut layer_tar = Vec::new();
        GzDecoder::new(&layer_gz[..])
            .read_to_end(&mut layer_tar)
            .expect("the layer is gzip");
        let mut entries = BTreeMap::new();
        for entry in tar::Archive::new(&layer_tar[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let name = name.trim_start_matches("./").trim_end_matches('/').to_string();
            let h = entry.header();
            let (kind, mode, uid, gid, mtime) = (
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
            );
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let e = Entry {
                kind,
                mode,
                uid,
                gid,
                mtime,
                data,
            };
            assert!(entries.insert(name.clone(), e).is_none(), "{name} twice");
        }
        Image {
            files,
            index,
            manifest,
            config,
            layer_gz,
            layer_tar,
            entries,
        }
    })
}

/// What the chart pulls: image.repository and the chart's appVersion.
fn chart_image() -> String {
    let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
    let values: serde_yaml::Value =
        serde_yaml::from_str(&read("charts/ganeti-operator/values.yaml")).unwrap();
    let chart: serde_yaml::Value = serde_yaml::from_str(&read("charts/ganeti-operator/Chart.yaml")).unwrap();
    format!(
        "{}:{}",
        values["image"]["repository"].as_str().unwrap(),
        chart["appVersion"].as_str().unwrap()
    )
}

#[test]
fn the_archive_is_an_oci_layout_whose_digests_match() {
    let img = image();
    let layout: Value = serde_json::from_slice(&img.files["oci-layout"]).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    for (name, data) in &img.files {
        if let Some(digest) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256(data), digest, "{name}: content and name disagree");
        }
    }
    let descriptors = [
        &img.index["manifests"][0],
        &img.manifest["config"],
        &img.manifest["layers"][0],
    ];
    let media = [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ];
    for (d, media) in descriptors.into_iter().zip(media) {
        assert_eq!(d["mediaType"], media);
        let name = format!("blobs/sha256/{}", &d["digest"].as_str().unwrap()[7..]);
        assert_eq!(d["size"], img.files[&name].len(), "{name}: size");
    }
    // Nothing but the layout, the three blobs: no leftovers.
    assert_eq!(img.files.len(), 5, "{:?}", img.files.keys().collect::<Vec<_>>());
    assert_eq!(img.index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(img.manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        img.config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        format!("sha256:{}", sha256(&img.layer_tar)),
        "diff_id is not the unpacked layer's digest"
    );
    assert!(
        img.layer_gz.len() <= MAX_LAYER_BYTES,
        "the image is {} MiB, over 40 MiB",
        img.layer_gz.len() >> 20
    );
}

#[test]
fn the_image_is_named_as_the_chart_pulls_it() {
    let annotations = &image().index["manifests"][0]["annotations"];
    let name = chart_image();
    assert_eq!(annotations["org.opencontainers.image.ref.name"], name);
    // What `ctr images import` names the image by.
    assert_eq!(annotations["io.containerd.image.name"], name);
    let platform = &image().index["manifests"][0]["platform"];
    assert_eq!(platform["os"], "linux");
    assert_eq!(platform["architecture"], "amd64");
}

#[test]
fn the_config_runs_the_operator_as_a_user_that_is_not_root() {
    let img = image();
    let c = &img.config["config"];
    let user = c["User"].as_str().unwrap();
    let (uid, gid) = user.split_once(':').expect("uid:gid");
    let (uid, gid): (u32, u32) = (uid.parse().unwrap(), gid.parse().unwrap());
    assert!(uid != 0 && gid != 0, "runs as {user}");
    // The chart's securityContext runs it as the same user.
    let deployment =
        std::fs::read_to_string(root().join("charts/ganeti-operator/templates/deployment.yaml")).unwrap();
    assert!(
        deployment.contains(&format!("runAsUser: {uid}")),
        "the chart runs another user"
    );
    // The user has a name in /etc/passwd and /etc/group (tools and libraries look it up).
    let passwd = String::from_utf8(img.entries["etc/passwd"].data.clone()).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.split(':').nth(2) == Some(uid.to_string().as_str())
                && l.split(':').nth(3) == Some(gid.to_string().as_str())),
        "{uid}:{gid} not in /etc/passwd:\n{passwd}"
    );
    let group = String::from_utf8(img.entries["etc/group"].data.clone()).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.split(':').nth(2) == Some(gid.to_string().as_str())),
        "{gid} not in /etc/group"
    );

    assert_eq!(c["Entrypoint"], serde_json::json!([format!("/{BINARY}")]));
    assert_eq!(c["Cmd"], serde_json::json!(["run"]));
    let labels = &c["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        labels["org.opencontainers.image.licenses"],
        env!("CARGO_PKG_LICENSE")
    );
    assert_eq!(labels["org.opencontainers.image.title"], "ganeti-operator");
    for key in ["source", "revision", "created", "description"] {
        let v = labels[format!("org.opencontainers.image.{key}")]
            .as_str()
            .unwrap_or_default();
        assert!(!v.is_empty(), "no label {key}");
    }
}

#[test]
fn the_layer_holds_the_binary_certificates_novnc_and_no_shell() {
    let img = image();
    let e = &img.entries;
    // Only what the operator uses; anything new here should be a decision.
    let tops: BTreeSet<&str> = e
        .keys()
        .filter(|p| !p.starts_with("usr/share/novnc/"))
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "etc",
        "etc/group",
        "etc/passwd",
        "etc/ssl",
        "etc/ssl/certs",
        "etc/ssl/certs/ca-certificates.crt",
        "usr",
        "usr/local",
        "usr/local/bin",
        BINARY,
        "usr/share",
        "usr/share/doc",
        "usr/share/doc/ca-certificates",
        "usr/share/doc/ca-certificates/copyright",
        "usr/share/doc/novnc",
        "usr/share/doc/novnc/copyright",
        NOVNC,
    ]
    .into();
    assert_eq!(tops, expected);
    // Of noVNC, the modules (core/ and its vendor/pako), not the package's own app.
    for path in e.keys().filter_map(|p| p.strip_prefix("usr/share/novnc/")) {
        assert!(
            ["core", "vendor"].contains(&path.split('/').next().unwrap()),
            "usr/share/novnc/{path}: not a module of the console page"
        );
    }
    for (path, entry) in e {
        let name = path.rsplit('/').next().unwrap();
        assert!(
            !["sh", "bash", "dash", "ash", "busybox"].contains(&name),
            "a shell in the image: {path}"
        );
        assert!(
            entry.kind.is_file() || entry.kind.is_dir(),
            "{path}: neither file nor directory"
        );
        assert_eq!((entry.uid, entry.gid), (0, 0), "{path}: not owned by root");
        // Readable by the user, writable by nobody but root (the root file system is
        // read-only in the chart anyway).
        let want = if entry.kind.is_dir() || path == BINARY {
            0o755
        } else {
            0o644
        };
        assert_eq!(entry.mode & 0o7777, want, "{path}: mode {:o}", entry.mode);
    }
    // Reproducible: one fixed mtime for everything.
    let mtimes: BTreeSet<u64> = e.values().map(|e| e.mtime).collect();
    assert_eq!(mtimes.len(), 1, "mtimes: {mtimes:?}");

    let ca = String::from_utf8_lossy(&e["etc/ssl/certs/ca-certificates.crt"].data);
    let certs = ca.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(certs >= 100, "the CA bundle has {certs} certificates");
}

/// Every module the console page imports, and every module those import, is in the
/// layer: the page works with the image's noVNC alone.
#[test]
fn every_novnc_module_of_the_console_page_is_in_the_layer() {
    let e = &image().entries;
    let page = std::fs::read_to_string(root().join("src/server/console/console.html")).unwrap();
    let import = regex::Regex::new(r#"(?:from|import)\s*['"]([^'"]+\.js)['"]"#).unwrap();
    let mut todo: Vec<String> = import
        .captures_iter(&page)
        .map(|c| {
            let spec = &c[1];
            let rel = spec
                .strip_prefix("{{NOVNC}}/")
                .unwrap_or_else(|| panic!("the page imports {spec}"));
            format!("{NOVNC}/{rel}")
        })
        .collect();
    assert!(todo.iter().any(|p| p.ends_with("core/rfb.js")), "{todo:?}");
    let mut seen = BTreeSet::new();
    while let Some(path) = todo.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let module = e
            .get(&path)
            .unwrap_or_else(|| panic!("{path} is imported but not in the image"));
        let dir = Path::new(&path).parent().unwrap();
        for c in import.captures_iter(&String::from_utf8_lossy(&module.data)) {
            let mut p = dir.to_path_buf();
            for part in Path::new(&c[1]).components() {
                match part {
                    std::path::Component::ParentDir => {
                        p.pop();
                    }
                    std::path::Component::Normal(n) => p.push(n),
                    _ => {}
                }
            }
            todo.push(p.to_string_lossy().into_owned());
        }
    }
    assert!(seen.len() > 30, "only {} modules: {seen:?}", seen.len());
    assert!(seen.contains(&format!("{NOVNC}/vendor/pako/lib/zlib/inflate.js")));
}

/// The binary needs no loader or libraries, and the one in the layer runs.
#[test]
fn the_binary_is_static_and_runs() {
    let bin = &image().entries[BINARY].data;
    assert_eq!(&bin[..4], b"\x7fELF");
    assert_eq!((bin[4], bin[5]), (2, 1), "not 64-bit little-endian");
    let u16_at = |o: usize| u16::from_le_bytes(bin[o..o + 2].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(bin[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    assert!(phnum > 0);
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(bin[o..o + 4].try_into().unwrap());
        assert_ne!(p_type, PT_INTERP, "the binary asks for a dynamic loader");
    }

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-test");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ganeti-operator");
    std::fs::write(&path, bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&path).arg("--version").env_clear().output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{out:?}");
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        version.trim(),
        format!("ganeti-operator {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The Containerfile (for buildah, podman, docker) describes the image `make image`
/// builds: same user, entrypoint, command, version and labels.
#[test]
fn the_containerfile_describes_the_same_image() {
    let file = std::fs::read_to_string(root().join("Containerfile")).unwrap();
    // Instructions with their continuation lines joined.
    let text = file.replace("\\\n", " ");
    let instr = |name: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(|s| s.trim().to_string())
            .collect()
    };
    let c = &image().config["config"];
    assert_eq!(instr("USER"), [c["User"].as_str().unwrap()]);
    assert_eq!(instr("ENTRYPOINT"), [c["Entrypoint"].to_string()]);
    assert_eq!(instr("CMD"), [c["Cmd"].to_string()]);
    assert_eq!(instr("ENV"), [c["Env"][0].as_str().unwrap()]);
    assert!(
        instr("ARG").contains(&format!("VERSION={}", env!("CARGO_PKG_VERSION"))),
        "ARG VERSION is not Cargo.toml's version"
    );
    assert_eq!(instr("FROM").last().map(String::as_str), Some("scratch"));
    assert!(
        instr("RUN").iter().any(|r| r.contains("scripts/image --rootfs")),
        "the Containerfile does not stage the files with scripts/image"
    );
    let labels = instr("LABEL").join(" ");
    for (key, value) in c["Labels"].as_object().unwrap() {
        let value = value.as_str().unwrap();
        let want = match key.rsplit('.').next().unwrap() {
            "created" => continue,
            "version" => "${VERSION}",
            "revision" => "${REVISION}",
            _ => value,
        };
        assert!(
            labels.contains(&format!("{key}=\"{want}\"")),
            "LABEL {key}=\"{want}\" missing from the Containerfile"
        );
    }
}

/// containerd imports the archive under the chart's name and runs it: a throwaway
/// containerd of its own (root, state and socket in a temporary directory; no CRI), as
/// root with Debian's containerd and runc (scripts/install-deps).
#[test]
fn containerd_imports_the_archive_and_runs_the_image() {
    let archive = archive_path();
    image();
    let dir = PathBuf::from(format!("/tmp/ganeti-operator-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("containerd.sock");
    let config = format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n",
        d = dir.display(),
        s = sock.display()
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    let daemon = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("containerd (Debian's containerd and runc; scripts/install-deps) must run, as root");
    /// Stops the daemon and removes its directory, also when the test fails.
    struct Daemon(std::process::Child, PathBuf);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let daemon = Daemon(daemon, dir.clone());
    let ctr = |args: &[&str]| {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .args(["--namespace", "image-test"])
            .args(args)
            .output()
            .expect("ctr");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ctr(&["version"]).0 {
        let log = std::fs::read_to_string(daemon.1.join("containerd.log")).unwrap_or_default();
        assert!(
            std::time::Instant::now() < deadline,
            "containerd did not start:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let (ok, out) = ctr(&["images", "import", archive.to_str().unwrap()]);
    assert!(ok, "ctr images import: {out}");
    let name = chart_image();
    let (ok, out) = ctr(&["images", "ls", "--quiet"]);
    assert!(ok && out.lines().any(|l| l == name), "{name} not imported: {out}");

    // The binary runs from the image's root file system, read-only.
    let id = format!("image-test-{}", std::process::id());
    let (ok, out) = ctr(&[
        "run",
        "--rm",
        "--read-only",
        &name,
        &id,
        &format!("/{BINARY}"),
        "--version",
    ]);
    assert!(ok, "ctr run ... --version: {out}");
    assert_eq!(
        out.trim(),
        format!("ganeti-operator {}", env!("CARGO_PKG_VERSION"))
    );
    // The image's own entrypoint and command: `run`, which finds no Kubernetes here
    // and says so (proof that it started as the operator, as the image's user).
    let (ok, out) = ctr(&["run", "--rm", "--read-only", &name, &id]);
    assert!(!ok, "the operator ran without a Kubernetes API: {out}");
    assert!(out.to_lowercase().contains("kube"), "{out}");
    drop(daemon);
}
