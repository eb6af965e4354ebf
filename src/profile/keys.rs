//! SSH public keys of a profile: parsed with the `ssh-key` crate (the OpenSSH
//! `authorized_keys` line format), fingerprinted as OpenSSH prints them (`SHA256:...`).
//! A pasted private key is refused with a message that says what to do. Pure.

use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

/// Smallest RSA modulus accepted: the minimum current guidance (NIST SP 800-57) allows.
const MIN_RSA_BITS: usize = 2048;

/// One key's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    Valid {
        /// `SHA256:...`, as `ssh-keygen -l` prints it.
        fingerprint: String,
        /// `ssh-ed25519`, `ssh-rsa`, ...
        algorithm: String,
        comment: String,
    },
    Invalid(String),
}

/// Whether `text` looks like a private key of any common format.
fn is_private(text: &str) -> bool {
    text.contains("PRIVATE KEY")
        || text.contains("PuTTY-User-Key-File")
        || text.contains("---- BEGIN SSH2 ENCRYPTED")
}

/// Checks one `authorized_keys` line. `n` (1-based) names it in messages.
pub fn check(n: usize, line: &str) -> KeyCheck {
    let line = line.trim();
    if is_private(line) {
        return KeyCheck::Invalid(format!(
            "key {n} is a private key: remove it, add the public key (the .pub file) instead, and treat that private key as leaked"
        ));
    }
    let key = match PublicKey::from_openssh(line) {
        Ok(k) => k,
        Err(e) => {
            return KeyCheck::Invalid(format!(
                "key {n} is not an OpenSSH public key ({e}): use one line such as 'ssh-ed25519 AAAA... user@host'"
            ));
        }
    };
    match key.key_data() {
        KeyData::Dsa(_) => {
            return KeyCheck::Invalid(format!(
                "key {n} is a DSA key, which OpenSSH no longer accepts: use an ed25519 key (ssh-keygen -t ed25519)"
            ));
        }
        KeyData::Rsa(rsa) => {
            let bits = rsa.n.as_positive_bytes().map(|b| b.len() * 8).unwrap_or(0);
            if bits < MIN_RSA_BITS {
                return KeyCheck::Invalid(format!(
                    "key {n} is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required (better: ssh-keygen -t ed25519)"
                ));
            }
        }
        KeyData::Other(_) => {
            return KeyCheck::Invalid(format!("key {n} has the unknown key type {}", key.algorithm()));
        }
        _ => {}
    }
    KeyCheck::Valid {
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        algorithm: key.algorithm().to_string(),
        comment: key.comment().to_string(),
    }
}

/// Every key's fingerprint (of the valid ones, in order) and every problem.
pub fn check_all(keys: &[String]) -> (Vec<String>, Vec<String>) {
    let mut fingerprints = Vec::new();
    let mut problems = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match check(i + 1, k) {
            KeyCheck::Valid { fingerprint, .. } => {
                if fingerprints.contains(&fingerprint) {
                    problems.push(format!("key {} repeats an earlier key ({fingerprint})", i + 1));
                } else {
                    fingerprints.push(fingerprint);
                }
            }
            KeyCheck::Invalid(m) => problems.push(m),
        }
    }
    (fingerprints, problems)
}

/// The keys to install in a VM: the valid ones, one line each, deduplicated.
pub fn valid_keys(keys: &[String]) -> Vec<String> {
    let mut seen = Vec::new();
    keys.iter()
        .enumerate()
        .filter_map(|(i, k)| match check(i + 1, k) {
            KeyCheck::Valid { fingerprint, .. } if !seen.contains(&fingerprint) => {
                seen.push(fingerprint);
                Some(k.trim().to_string())
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with ssh-keygen for these tests; the fingerprints are what
    // `ssh-keygen -lf` printed for them.
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICXcY0axmIdfCwWJuClD+uBiHH4Zm/UXE10jgbbpyt9 alice@laptop";
    const ED25519_FP: &str = "SHA256:/VOZh0gU/r2JIjAzt8K+K6NNofftK4bTVLICAgXSZxg";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMdgGR3lIePQON+sBMgzI0woOoCy+J5zpfP7sOx2b4ApwNxEPemdYyeVsyH5xWjzO1bnew5sltUqm1EZupuOTEI= ec";
    const ECDSA_FP: &str = "SHA256:P07sqjRtJOUIqbdY3Z5EKT5/s3Q4LK84EC2CsuMdG1Q";
    const RSA_3072: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCPzxOSe6/Ibi+sStuIZvcDyWPzIAFRX2NBzW6KsbwocbHCAPf1pEyqwE5sBZfciLQQmNVbD2B6GYGJ88mpuzGZySFKRIyHQZMgdIL8J8LbMMcg3qHtdtygtzfU95It7pcdf/spvpeReS8xkTL4AFJ9ieqILgfA3XOpps9PBGc0WUsEXwHmoaj7Pv+S7ZwTVj59nPuKe6V9tLhP1KqwgIpwDLvxraiy4HJoh8/OLbIteTBqOHDMksjA8vk6to5IIfD2OYC31lxXG5VI+78lTKUH6/qPN8iT4KZ0TUrFZ0sCi6YzYg8SXeHb/GX4u9K88sXBryQkOGHDBxs7O4+IOSyYssvJd3yTWUQ8MI9Mx8kaOvj+6jkGu6xnA/l5fBKiqV5xUfDkelJ/SlkREefbIDcUgWtyBkQOiB9wKjMIKbDAVYyPyuSXs5w5e04c9fyjoIu4e9Wmdoo6uOtmA+MBHtuFc5iPvbjsoN7Te6fYw1FFhAhgFyQb/eWTeZ1+lgGJiDU= big";
    const RSA_3072_FP: &str = "SHA256:MiHUF3RVOrLSxtHZzUd62+oLJBeq8c9mkhKt5cIvxKE";
    const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDCbgZTDhtYGc4THsqgEZ+MPzqdohK5pLAe0dmGaM/Xs1qPds3w/mfAqlVaKy3Bs6E3CXGjVLNZqQJT1lfqFa0wcdNqPBfBYRgdoPSK+ao47t/6IxF1kzwrDVAQ3NwSaWtHBr9Ia0feCJptW9mEbTvYtLVeRddIoVxyw9xyzXpJoQ== small";
    const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBANdc3Sr717Wd7zQfBCxG8e10pkUz4NiFpzQIeLWPaY19BQ6uhFBAduyTlno6tUBZAvek048s5JNyOIybxxpbWMp0aCvj9GWU1rtDE8+mrUkWrvMpJP1yQ0ZvmbVcE/OrJpaiY8hdVmpc4oX5ISmu4skqSJQF6hmcoxUZ5Uo4gMFDAAAAFQCqCXWQgRzhKWp1tUIim8wTVuDS0QAAAIAM67kF4d1s696E+f6FQY0ot2RUWPijOjKJeAr5QZBYNnErI8DRRtWUt2VmYMCh+sywICE+mW5/1iUk7sH0kBGhaX7VTicD1fYVTldHTcBDx/CJxD1GcGNlBhtamA8q65rizY8dTz1SWOjzeSJcGsSCipAAR6+6KL+uLXgGsabx0AAAAIEArDYZJKSXVE6TsG/bj+Ps3/bLnkKogxxDjZbaTDTvZ5XRvW9bgHnnIg7hEV6wz5H5iR+UCmn2EDSsLXqGBzYtQjJZZh56BCjZ91GFIDXXu8l8NXA8f7H3UwFNspgAFZHxqubbI0yk4sEwXFnm/neSIFhIbJdO8cMiLTJgeI4V4Dw= dsa";

    #[test]
    fn an_ed25519_key_is_fingerprinted_like_ssh_keygen() {
        match check(1, ED25519) {
            KeyCheck::Valid {
                fingerprint,
                algorithm,
                comment,
            } => {
                assert_eq!(fingerprint, ED25519_FP);
                assert_eq!(algorithm, "ssh-ed25519");
                assert_eq!(comment, "alice@laptop");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ecdsa_and_rsa_keys_too() {
        for (key, fp) in [(ECDSA, ECDSA_FP), (RSA_3072, RSA_3072_FP)] {
            match check(1, key) {
                KeyCheck::Valid { fingerprint, .. } => assert_eq!(fingerprint, fp),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn weak_keys_are_refused() {
        match check(3, RSA_1024) {
            KeyCheck::Invalid(m) => assert!(m.contains("1024-bit RSA"), "{m}"),
            other => panic!("{other:?}"),
        }
        match check(1, DSA) {
            KeyCheck::Invalid(m) => assert!(m.contains("DSA"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_private_key_is_refused_with_advice() {
        let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
        match check(2, private) {
            KeyCheck::Invalid(m) => {
                assert!(m.starts_with("key 2 is a private key"), "{m}");
                assert!(m.contains(".pub"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check(1, "PuTTY-User-Key-File-3: ssh-ed25519"),
            KeyCheck::Invalid(_)
        ));
    }

    #[test]
    fn garbage_and_truncated_keys_are_refused() {
        for bad in [
            "not a key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICXcY0axmIdfCwWJuClD",
            "ssh-ed25519",
        ] {
            match check(1, bad) {
                KeyCheck::Invalid(m) => assert!(m.contains("not an OpenSSH public key"), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn duplicates_are_reported_and_dropped_from_the_keys_to_install() {
        let keys = vec![ED25519.to_string(), format!("  {ED25519}  "), "junk".to_string()];
        let (fps, problems) = check_all(&keys);
        assert_eq!(fps, vec![ED25519_FP.to_string()]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(valid_keys(&keys), vec![ED25519.to_string()]);
    }
}
