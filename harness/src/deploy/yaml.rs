//! A YAML writer for manifests built as JSON values (there is no maintained
//! YAML serializer for serde). Strings are written as JSON strings, which
//! YAML reads as double-quoted scalars, except multi-line text, which becomes
//! a literal block (`|`) so a cluster file stays readable.

use serde_json::Value;
use std::fmt::Write;

/// One YAML document for `v` (an object), ending with a newline.
pub fn document(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, 0);
    out
}

/// Documents joined with `---` separators.
pub fn documents(vs: &[Value]) -> String {
    vs.iter().map(document).collect::<Vec<_>>().join("---\n")
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

/// A map key, plain when YAML cannot misread it (`name`,
/// `app.kubernetes.io/name`), else quoted.
fn key(k: &str) -> String {
    let plain = k.starts_with(|c: char| c.is_ascii_alphabetic())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
        && !["y", "n", "yes", "no", "true", "false", "on", "off", "null"]
            .contains(&k.to_ascii_lowercase().as_str());
    if plain {
        k.to_string()
    } else {
        scalar(&Value::String(k.to_string()))
    }
}

/// Text a literal block (`|`) reproduces exactly: lines end in one final
/// newline, and none starts with white space (which would change the
/// block's indentation) or holds a control character.
fn is_block_text(v: &Value) -> bool {
    let Value::String(s) = v else { return false };
    s.contains('\n')
        && s.ends_with('\n')
        && !s.ends_with("\n\n")
        && !s.chars().any(|c| c.is_control() && c != '\n')
        && s.lines().all(|l| !l.starts_with([' ', '\t']))
}

fn is_nested(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// Writes the value of a key or list item whose line has been started;
/// `indent` is the indentation of that key.
fn write_after_key(out: &mut String, v: &Value, indent: usize) {
    if is_block_text(v) {
        let Value::String(s) = v else { return };
        out.push_str(" |\n");
        for line in s.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "{:w$}{line}", "", w = indent + 2);
            }
        }
    } else if is_nested(v) {
        out.push('\n');
        write_value(out, v, indent + 2);
    } else {
        let _ = writeln!(out, " {}", empty_or_scalar(v));
    }
}

fn empty_or_scalar(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => scalar(other),
    }
}

fn write_value(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                let _ = write!(out, "{pad}{}:", key(k));
                write_after_key(out, val, indent);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key shares the dash's line.
                        let mut first = true;
                        for (k, val) in m {
                            let lead = if first {
                                format!("{pad}- ")
                            } else {
                                format!("{pad}  ")
                            };
                            first = false;
                            let _ = write!(out, "{lead}{}:", key(k));
                            write_after_key(out, val, indent + 2);
                        }
                    }
                    other => {
                        let _ = write!(out, "{pad}-");
                        write_after_key(out, other, indent);
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", empty_or_scalar(other));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_lists_and_block_text() {
        let v = json!({
            "a": {"b": [1, "two", {"c": true, "d": []}], "e": {}},
            "text": "x = 1\n\ny = \"z\"\n",
            "plain": "has: colon",
            "yes": 1,
        });
        let want = "a:\n  b:\n    - 1\n    - \"two\"\n    - c: true\n      d: []\n  e: {}\n\
                    plain: \"has: colon\"\ntext: |\n  x = 1\n\n  y = \"z\"\n\"yes\": 1\n";
        assert_eq!(document(&v), want);
    }

    #[test]
    fn text_a_block_would_change_stays_quoted() {
        for s in [
            "\n  x\n",
            "x\n\n",
            "x\n y\n",
            "x\ty\r\n",
            "no newline at the end\nz",
        ] {
            let y = document(&json!({"t": s}));
            assert_eq!(y, format!("t: {}\n", Value::String(s.into())), "{s:?}");
        }
    }

    #[test]
    fn lists_in_list_items_indent_under_their_key() {
        let v = json!({"containers": [{"args": ["a", "b"], "env": [{"name": "X"}], "name": "r"}]});
        let want = "containers:\n  - args:\n      - \"a\"\n      - \"b\"\n    env:\n      - name: \"X\"\n    name: \"r\"\n";
        assert_eq!(document(&v), want);
        assert_eq!(
            documents(&[json!({"a": 1}), json!({"b": 2})]),
            "a: 1\n---\nb: 2\n"
        );
    }
}
