//! Reading request input at the edge: JSON bodies into protocol messages (unknown
//! fields refused, errors naming the field), path names and query parameters, each
//! checked and bounded before anything is sent to the control plane.

use crate::{Error, Result};
use serde::de::DeserializeOwned;

/// Longest name accepted in a path (DNS names are at most 253 characters).
pub const MAX_NAME: usize = 253;

/// Parses a JSON body into `T`; an error names the field it is about (`body` when the
/// document itself is broken).
pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request("body", "a JSON object is required"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let mut message = e.inner().to_string();
        // "unknown field `x`, expected one of <every field>": the list is noise here.
        if message.starts_with("unknown field")
            && let Some(cut) = message.find(", expected")
        {
            message.truncate(cut);
        }
        let broken = e.inner().is_syntax() || e.inner().is_eof();
        let field = if broken || path == "." || path.is_empty() || path.starts_with('?') {
            "body".to_owned()
        } else {
            path
        };
        Error::bad_request(field, message)
    })?;
    de.end()
        .map_err(|e| Error::bad_request("body", format!("trailing data: {e}")))?;
    Ok(value)
}

/// Like [`json`], but an empty body means the default value.
pub fn json_or_default<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json(bytes)
}

/// A name from the path: 1 to 253 characters of letters, digits, `.`, `_` and `-`.
/// The control plane checks the stricter rules of each kind of object.
pub fn name(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(Error::bad_request(
            field,
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::bad_request(
            field,
            format!("{c:?} is not allowed (letters, digits, '.', '_' and '-')"),
        ));
    }
    Ok(())
}

/// The body's copy of a name must be empty (the path's is used) or equal the path's.
pub fn same_name(field: &str, in_body: &str, in_path: &str) -> Result<()> {
    if !in_body.is_empty() && in_body != in_path {
        return Err(Error::bad_request(
            field,
            format!("{in_body:?} differs from the name in the path ({in_path:?})"),
        ));
    }
    Ok(())
}

/// A JSON request body naming what the path names: the body may leave the name out or
/// repeat it, but not name something else. `name` picks the request's name field.
pub fn named_by_path<T: DeserializeOwned>(
    path_name: String,
    bytes: &[u8],
    name: fn(&mut T) -> &mut String,
) -> Result<T> {
    self::name("name", &path_name)?;
    let mut req: T = json(bytes)?;
    let named = name(&mut req);
    same_name("name", named, &path_name)?;
    *named = path_name;
    Ok(req)
}

/// Query parameters as pairs (a key may repeat); unknown keys are refused by the caller.
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>> {
    let raw = raw.unwrap_or("");
    serde_urlencoded::from_str(raw).map_err(|e| Error::bad_request("query", e.to_string()))
}

/// Refuses query keys outside `known`.
pub fn only_keys(pairs: &[(String, String)], known: &[&str]) -> Result<()> {
    if let Some((key, _)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(Error::bad_request(
            key.clone(),
            format!("unknown query parameter (known: {})", known.join(", ")),
        ));
    }
    Ok(())
}

pub fn parse_bool(field: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Error::bad_request(field, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use constellation_proto::v1::ServiceSpec;

    #[test]
    fn json_errors_name_the_field() {
        let err =
            json::<ServiceSpec>(br#"{"name":"web","ports":[{"container_port":"x"}]}"#).unwrap_err();
        let Error::BadRequest { field, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(field, "ports[0].container_port");

        let err = json::<ServiceSpec>(br#"{"name":"web","bogus":1}"#).unwrap_err();
        assert!(
            matches!(err, Error::BadRequest { ref field, .. } if field == "bogus"),
            "{err}"
        );

        let err = json::<ServiceSpec>(b"{not json").unwrap_err();
        assert!(
            matches!(err, Error::BadRequest { ref field, .. } if field == "body"),
            "{err}"
        );
        assert!(json::<ServiceSpec>(b"  ").is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(name("name", "web-1").is_ok());
        assert!(name("name", "").is_err());
        assert!(name("name", "a/b").is_err());
        assert!(name("name", &"a".repeat(254)).is_err());
        assert!(same_name("name", "", "web").is_ok());
        assert!(same_name("name", "other", "web").is_err());
    }
}
