//! Reading JSON request bodies field by field, so every 400 names the field at fault
//! (with its path inside nested objects, e.g. `tags[2].name`).

use crate::http::ApiError;
use serde_json::{Map, Value};

pub struct Body {
    fields: Map<String, Value>,
    /// Where this object sits in the request (`settings.`, `tags[2].`), for messages.
    prefix: String,
}

impl Body {
    /// Parses a JSON object body; `allowed` lists the accepted fields (others are refused, so
    /// a typo like `corp_secert` is an error rather than a silently missing field).
    pub fn parse(bytes: &[u8], allowed: &[&str]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(ApiError::BadRequest("body must be a JSON object".into()));
        };
        Self::from_map(fields, allowed, "")
    }

    /// A nested object, named by `prefix` in messages.
    pub fn from_map(
        fields: Map<String, Value>,
        allowed: &[&str],
        prefix: &str,
    ) -> Result<Self, ApiError> {
        if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::BadRequest(format!(
                "unknown field `{prefix}{unknown}`"
            )));
        }
        Ok(Self {
            fields,
            prefix: prefix.to_string(),
        })
    }

    /// The field's name as the client sees it.
    pub fn field(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn bad(&self, key: &str, what: &str) -> ApiError {
        ApiError::BadRequest(format!("field `{}` {what}", self.field(key)))
    }

    /// The value, with `null` counted as absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|v| !v.is_null())
    }

    pub fn optional_str(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(key, "must be a string")),
        }
    }

    /// A string that must be present (it may be empty: the caller checks its content).
    pub fn required_str(&self, key: &str) -> Result<&str, ApiError> {
        self.optional_str(key)?
            .ok_or_else(|| self.bad(key, "is required"))
    }

    /// A string that must be present and not blank.
    pub fn nonempty_str(&self, key: &str) -> Result<String, ApiError> {
        let s = self.required_str(key)?;
        if s.trim().is_empty() {
            return Err(self.bad(key, "must not be empty"));
        }
        Ok(s.to_string())
    }

    pub fn optional_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.bad(key, "must be true or false")),
        }
    }

    pub fn optional_u32(&self, key: &str) -> Result<Option<u32>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.bad(key, &format!("must be an integer from 0 to {}", u32::MAX))
                }),
        }
    }

    /// A string of digits, accepted as a JSON string or a non-negative JSON integer.
    pub fn required_digits(&self, key: &str) -> Result<String, ApiError> {
        let s = match self.get(key) {
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(Value::Number(_)) => return Err(self.bad(key, "must be a non-negative integer")),
            _ => self.nonempty_str(key)?,
        };
        if !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 20 {
            return Err(self.bad(key, "must be a string of digits"));
        }
        Ok(s)
    }

    pub fn optional_object(&self, key: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(_) => Err(self.bad(key, "must be an object")),
        }
    }

    pub fn required_list(&self, key: &str) -> Result<&Vec<Value>, ApiError> {
        match self.get(key) {
            None => Err(self.bad(key, "is required")),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(self.bad(key, "must be a list")),
        }
    }

    pub fn optional_str_list(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.bad(key, "must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.bad(key, "must be a list of strings")),
        }
    }
}
