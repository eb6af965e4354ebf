//! A user's profile as the service reads it, shared by the UserProfile controller
//! (which mails verification links) and the HTTP server (which takes them): SSH key
//! checks, email verification decisions and links. Pure but for [`write_status`].

pub mod keys;
pub mod link;
pub mod plan;
pub mod seen;

use crate::api::profile::{UserProfile, UserProfileStatus};
use kube::api::Api;

/// Where the operator's HTTP server takes verification links.
pub const VERIFY_PATH: &str = "/verify-email";

/// The link a user follows: `<public URL>/verify-email?token=...`.
pub fn verify_url(public_url: &str, token: &str) -> String {
    format!("{}{VERIFY_PATH}?token={token}", public_url.trim_end_matches('/'))
}

/// Writes the whole status (as this operator keeps it: `lastSeen` is left to whoever
/// records it) if the profile is still the version `p` was read as.
pub async fn write_status(
    client: &kube::Client,
    p: &UserProfile,
    status: &UserProfileStatus,
) -> Result<UserProfile, kube::Error> {
    let mut status = status.clone();
    status.last_seen = None;
    crate::status::apply_if_unchanged(&Api::<UserProfile>::all(client.clone()), p, &status).await
}
