//! Answer checking: what a validator's dendrite would accept, and what the
//! subnet's reward needs, checked on every answer the probe gets.
//!
//! Checks compare JSON values rather than bytes, so a miner that
//! re-serializes its answer passes as long as every field survives. Each
//! failed check names itself in the error, which the report prints.

use crate::client::Exchange;
use crate::request::{Plan, Sent, DENDRITE_IP, DENDRITE_VERSION};
use cm_core::rules;
use serde_json::{Map, Value};

/// Checks the JSON body of a 200 answer to a [`build_request`] request:
/// every request field echoed intact (compared as JSON values, so a miner
/// that re-serializes passes), the axon block at 200/Success with the
/// plan's address and miner hotkey, and the subnet's output rules. Returns
/// the answer's class, time to conversion, confidence and response time;
/// the error names the failed check. Status and headers are the caller's
/// to check.
pub fn check_answer(plan: &Plan, s: &Sent<'_>, got: &Value) -> Result<(u8, f64, f64, f64), String> {
    let obj = got.as_object().ok_or("body is not an object")?;
    let timeout = serde_json::Number::from_f64(plan.timeout).map(Value::Number);
    let fixed: [(&str, Option<Value>); 6] = [
        ("name", Some(Value::from("ConversionSynapse"))),
        ("timeout", timeout),
        ("total_size", Some(Value::from(0))),
        ("header_size", Some(Value::from(0))),
        ("computed_body_hash", Some(Value::from(""))),
        ("miner_uid", Some(Value::from(0))),
    ];
    for (k, v) in &fixed {
        if obj.get(*k) != v.as_ref() {
            return Err(format!("field '{k}' not echoed intact"));
        }
    }
    if obj.get("features") != plan.features.get(s.idx) {
        return Err("field 'features' not echoed intact".into());
    }
    let d = obj
        .get("dendrite")
        .and_then(Value::as_object)
        .ok_or("no dendrite object")?;
    let dendrite_ok = d.len() == cm_host::synapse::TERMINAL_KEYS.len()
        && ["status_code", "status_message", "process_time", "port"]
            .iter()
            .all(|k| d.get(*k) == Some(&Value::Null))
        && d.get("ip").and_then(Value::as_str) == Some(DENDRITE_IP)
        && d.get("version").and_then(Value::as_u64) == Some(DENDRITE_VERSION)
        && d.get("nonce").and_then(Value::as_u64) == Some(s.nonce)
        && d.get("uuid").and_then(Value::as_str) == Some(s.uuid)
        && d.get("hotkey").and_then(Value::as_str) == Some(plan.signer_for(s.nonce).ss58.as_str())
        && d.get("signature").and_then(Value::as_str) == Some(s.signature);
    if !dendrite_ok {
        return Err("field 'dendrite' not echoed intact".into());
    }
    let ax = obj
        .get("axon")
        .and_then(Value::as_object)
        .ok_or("no axon object")?;
    if ax.get("status_code").and_then(Value::as_u64) != Some(200)
        || ax.get("status_message").and_then(Value::as_str) != Some("Success")
    {
        return Err("axon status is not 200/Success".into());
    }
    if ax.get("ip").and_then(Value::as_str) != Some(plan.target.ip().to_string().as_str()) {
        return Err("axon.ip not echoed".into());
    }
    if ax.get("port").and_then(Value::as_u64) != Some(plan.target.port() as u64) {
        return Err("axon.port not echoed".into());
    }
    if ax.get("hotkey").and_then(Value::as_str) != Some(plan.miner.as_str()) {
        return Err("axon.hotkey not echoed".into());
    }
    check_outputs(obj)
}

/// The subnet's output rules on an answer.
fn check_outputs(obj: &Map<String, Value>) -> Result<(u8, f64, f64, f64), String> {
    let p = obj
        .get("prediction")
        .and_then(Value::as_object)
        .ok_or("no prediction object")?;
    let class = p
        .get("conversion_happened")
        .and_then(Value::as_u64)
        .ok_or("conversion_happened is not 0 or 1")?;
    let t = p
        .get("time_to_conversion_seconds")
        .and_then(Value::as_f64)
        .ok_or("time_to_conversion_seconds is not a number")?;
    let c = obj
        .get("confidence")
        .and_then(Value::as_f64)
        .ok_or("confidence is not a number")?;
    rules::check_answer(class, t, c).map_err(|broken| {
        format!("output rule broken: {broken} (class {class}, time {t}, confidence {c})")
    })?;
    let rt = obj
        .get("response_time")
        .and_then(Value::as_f64)
        .ok_or("response_time is not a number")?;
    if !(rt.is_finite() && rt >= 0.0) {
        return Err(format!("response_time {rt} is not a non-negative number"));
    }
    // check_answer admits class 0 or 1 only.
    Ok((class as u8, t, c, rt))
}

/// The message a bad signature is refused with (host/README.md, gate step 8).
const SIGNATURE_MISMATCH: &str = "Not Verified with error: Signature mismatch";

/// Checks the refusal of a forged request: 401 in the status line and in
/// `bt_header_axon_status_code`, and a JSON body whose message says
/// "Signature mismatch". The error says what was answered instead.
pub(crate) fn check_forged_refusal(x: &Exchange) -> Result<(), String> {
    if x.status != 401 {
        return Err(format!("answered status {}", x.status));
    }
    if !x.hdr_matches {
        return Err("refused without bt_header_axon_status_code 401".into());
    }
    if !x.json {
        return Err(format!("refused with content-type {}", x.ctype));
    }
    let got: Value = serde_json::from_slice(&x.body)
        .map_err(|_| "refused with a body that is not JSON".to_string())?;
    match got.get("message").and_then(Value::as_str) {
        Some(m) if m.starts_with(SIGNATURE_MISMATCH) => Ok(()),
        _ => Err("refused for another reason than a signature mismatch".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::request_value;
    use crate::request::tests::test_plan;
    use cm_host::wallet::Hotkey;

    /// The answer our miner gives, made by the server's own writer.
    fn answer_for(plan: &Plan, sent: &Sent<'_>) -> Value {
        let request = serde_json::to_vec(&request_value(plan, sent)).unwrap();
        let p = cm_core::model::Prediction {
            conversion_happened: 1,
            time_to_conversion_seconds: 60.0,
            confidence: 0.9,
        };
        let f = cm_core::respond::Filled {
            name: "ConversionSynapse",
            prediction: Some(&p),
            seconds: 1e-4,
            me: cm_host::synapse::AxonId {
                hotkey: &plan.miner,
                ip: "127.0.0.1",
                port: 9,
            },
        };
        let body = cm_core::parse::parse_body(&request, &mut Default::default()).unwrap();
        let mut out = vec![0u8; cm_core::respond::max_synapse_len(request.len(), &f)];
        let n = cm_core::respond::write_synapse(&request, &body.layout, &f, &mut out).unwrap();
        serde_json::from_slice(&out[..n]).unwrap()
    }

    #[test]
    fn answer_checks_catch_broken_rules() {
        let miner = Hotkey::generate();
        let plan = test_plan(&miner, 2);
        let sent = Sent {
            idx: 1,
            nonce: 77,
            uuid: "u",
            signature: "0x00",
        };
        let good = answer_for(&plan, &sent);
        assert!(check_answer(&plan, &sent, &good).is_ok());
        let breakages: [(&str, Value); 11] = [
            (
                "/prediction/time_to_conversion_seconds",
                serde_json::json!(-1.0),
            ),
            ("/features/total_messages", serde_json::json!(-3)),
            ("/confidence", serde_json::json!(1.5)),
            ("/dendrite/nonce", serde_json::json!(78)),
            ("/dendrite/signature", serde_json::json!("0x01")),
            ("/dendrite/port", serde_json::json!(1)),
            ("/axon/status_code", serde_json::json!(500)),
            ("/axon/hotkey", serde_json::json!("x")),
            ("/timeout", serde_json::json!(11.0)),
            ("/miner_uid", serde_json::json!(1)),
            ("/response_time", serde_json::json!(-0.5)),
        ];
        for (ptr, v) in breakages {
            let mut bad = good.clone();
            *bad.pointer_mut(ptr).unwrap() = v;
            assert!(check_answer(&plan, &sent, &bad).is_err(), "{ptr}");
        }
        let mut bad = good.clone();
        bad["features"] = plan.features[0].clone();
        assert!(
            check_answer(&plan, &sent, &bad).is_err(),
            "another row's features"
        );
        let mut bad = good;
        bad.as_object_mut().unwrap().remove("computed_body_hash");
        assert!(check_answer(&plan, &sent, &bad).is_err());
    }
}
