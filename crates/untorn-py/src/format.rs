//! YAML and TOML through untorn's own parsers and renderers (the ones `untorn edit` and
//! `untorn check` use), with JSON text as the go-between: Python's `json` module turns objects
//! into JSON text and back, and this module turns JSON text into YAML or TOML and back.

use crate::atomic::bytes;
use crate::error::to_py;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::Value;
use std::path::PathBuf;
use untorn::Format;

pub(crate) fn format_from(name: &str) -> PyResult<Format> {
    match name.to_ascii_lowercase().as_str() {
        "json" => Ok(Format::Json),
        "yaml" | "yml" => Ok(Format::Yaml),
        "toml" => Ok(Format::Toml),
        "raw" => Ok(Format::Raw),
        _ => Err(PyValueError::new_err(format!(
            "format must be 'json', 'yaml', 'toml' or 'raw', not {name:?}"
        ))),
    }
}

/// The format a file name's extension implies: "json", "yaml", "toml", or "raw".
#[pyfunction]
pub(crate) fn format_for_path(path: PathBuf) -> &'static str {
    match Format::from_path(path) {
        Format::Json => "json",
        Format::Yaml => "yaml",
        Format::Toml => "toml",
        _ => "raw",
    }
}

/// Renders the JSON text `json` as `format` (JSON: two-space indentation and a final newline).
/// `path` names the file in error messages.
#[pyfunction]
pub(crate) fn render<'py>(
    py: Python<'py>,
    format: &str,
    json: &str,
    path: PathBuf,
) -> PyResult<Bound<'py, PyBytes>> {
    let f = format_from(format)?;
    let value: Value = serde_json::from_str(json)
        .map_err(|e| PyValueError::new_err(format!("not JSON text: {e}")))?;
    let out = f.render(&value, &path).map_err(to_py)?;
    Ok(bytes(py, &out))
}

/// Parses `data` as `format` and returns it as compact JSON text; raises
/// `untorn.InvalidContentError` (with `.line` and `.column`) if it does not parse. TOML dates
/// and times become strings.
#[pyfunction]
pub(crate) fn parse(format: &str, data: &[u8], path: PathBuf) -> PyResult<String> {
    let f = format_from(format)?;
    let mut value: Value = f.parse(data, &path).map_err(to_py)?;
    if f == Format::Toml {
        untoml_datetimes(&mut value);
    }
    serde_json::to_string(&value).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Checks that `data` is one valid document of `format`; raises `untorn.InvalidContentError`
/// (with `.line` and `.column`) if not.
#[pyfunction]
pub(crate) fn check_format(format: &str, data: &[u8], path: PathBuf) -> PyResult<()> {
    format_from(format)?.check(data, &path).map_err(to_py)
}

/// The `toml` crate hands dates and times to a generic deserializer as a one-key map; make them
/// plain strings.
fn untoml_datetimes(v: &mut Value) {
    const KEY: &str = "$__toml_private_datetime";
    match v {
        Value::Object(m) => {
            if m.len() == 1 {
                if let Some(Value::String(s)) = m.get(KEY) {
                    *v = Value::String(s.clone());
                    return;
                }
            }
            m.values_mut().for_each(untoml_datetimes);
        }
        Value::Array(a) => a.iter_mut().for_each(untoml_datetimes),
        _ => {}
    }
}
