//! Just enough of Kubernetes' protobuf encoding to read what client-go
//! sends as protobuf only: `kubectl auth can-i`'s SelfSubjectAccessReview.
//! The body is `k8s\0` and a `runtime.Unknown` whose `raw` field holds the
//! object; the answer goes back as JSON, which the client also accepts.

use serde_json::{json, Map, Value};

const MAGIC: &[u8] = b"k8s\0";

/// The review as the JSON a client would have sent, or why not.
pub fn access_review(body: &[u8]) -> Result<Value, String> {
    let envelope = body.strip_prefix(MAGIC).ok_or("no k8s protobuf magic")?;
    // runtime.Unknown: 1 typeMeta, 2 raw.
    let raw = field(envelope, 2)?.ok_or("no raw object in the envelope")?;
    // SelfSubjectAccessReview: 2 spec; its spec: 1 resourceAttributes.
    let spec = field(raw, 2)?.unwrap_or_default();
    let mut review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {},
    });
    if let Some(attributes) = field(spec, 1)? {
        let names = [
            "namespace",
            "verb",
            "group",
            "version",
            "resource",
            "subresource",
            "name",
        ];
        let mut out = Map::new();
        for (number, value) in fields(attributes)? {
            if let (Some(name), Wire::Bytes(bytes)) = (names.get((number as usize).wrapping_sub(1)), value) {
                let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
                out.insert((*name).to_string(), Value::String(text.to_string()));
            }
        }
        review["spec"]["resourceAttributes"] = Value::Object(out);
    }
    Ok(review)
}

enum Wire<'a> {
    Varint,
    Bytes(&'a [u8]),
}

/// The first length-delimited field `number` of a message.
fn field(message: &[u8], number: u64) -> Result<Option<&[u8]>, String> {
    Ok(fields(message)?.into_iter().find_map(|(n, v)| match v {
        Wire::Bytes(b) if n == number => Some(b),
        _ => None,
    }))
}

fn fields(mut message: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let value = match key & 7 {
            0 => {
                varint(&mut message)?;
                Wire::Varint
            }
            2 => {
                let len = usize::try_from(varint(&mut message)?).map_err(|e| e.to_string())?;
                if len > message.len() {
                    return Err("a field runs past the end".into());
                }
                let (bytes, rest) = message.split_at(len);
                message = rest;
                Wire::Bytes(bytes)
            }
            other => return Err(format!("wire type {other} is not used by these messages")),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn varint(input: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first().ok_or("a varint runs past the end")?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint is too long".into())
}
