//! Deserialisers that accept what WeCom actually sends (§9 P5): numbers as strings, strings
//! as numbers, `null` for absent.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub fn i64_of(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or_default(),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map(|f| f as i64)
            .unwrap_or_default(),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(i64_of(&Value::deserialize(d)?))
}

pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64_of(&Value::deserialize(d)?);
    Ok(v.clamp(0, i64::from(u32::MAX)) as u32)
}

pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match &v {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        v => Some(i64_of(v).clamp(0, i64::from(u32::MAX)) as u32),
    })
}

pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.trim(), "true" | "1" | "TRUE" | "True"),
        _ => false,
    })
}

pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    })
}

/// An empty string counts as absent.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = string(d)?;
    Ok((!s.is_empty()).then_some(s))
}
