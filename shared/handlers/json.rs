//! Reading JSON request bodies field by field, so every 400 names the field at fault.

use crate::http::ApiError;
use serde_json::{Map, Value};

pub struct Body {
    fields: Map<String, Value>,
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
        Ok(Self { fields })
    }

    pub fn required_str(&self, name: &str) -> Result<String, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => {
                Err(ApiError::BadRequest(format!("field `{name}` is required")))
            }
            Some(Value::String(s)) if s.trim().is_empty() => Err(ApiError::BadRequest(format!(
                "field `{name}` must not be empty"
            ))),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ApiError::BadRequest(format!(
                "field `{name}` must be a string"
            ))),
        }
    }

    pub fn optional_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::BadRequest(format!(
                "field `{name}` must be true or false"
            ))),
        }
    }

    /// A string of digits, accepted as a JSON string or a non-negative JSON integer.
    pub fn required_digits(&self, name: &str) -> Result<String, ApiError> {
        let s = match self.fields.get(name) {
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(Value::Number(_)) => {
                return Err(ApiError::BadRequest(format!(
                    "field `{name}` must be a non-negative integer"
                )));
            }
            _ => self.required_str(name)?,
        };
        if !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 20 {
            return Err(ApiError::BadRequest(format!(
                "field `{name}` must be a string of digits"
            )));
        }
        Ok(s)
    }

    pub fn optional_object(&self, name: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(_) => Err(ApiError::BadRequest(format!(
                "field `{name}` must be an object"
            ))),
        }
    }

    pub fn optional_str_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        ApiError::BadRequest(format!("field `{name}` must be a list of strings"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::BadRequest(format!(
                "field `{name}` must be a list of strings"
            ))),
        }
    }
}
