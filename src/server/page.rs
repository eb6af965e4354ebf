//! The small HTML pages the links in mails lead to (email verification, confirmation of
//! VM actions): a title and a body, the title escaped here, the body by the caller.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// `s` as HTML text (element content or a quoted attribute value).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A page with `status`: `title` as text, `body` as HTML (escape what it quotes).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>\n",
        t = escape(title)
    );
    (status, Html(html)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_is_escaped_and_the_body_is_not() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let r = page(StatusCode::GONE, "<b>", "<p>gone</p>");
        assert_eq!(r.status(), StatusCode::GONE);
    }
}
