//! CPU time of one WeCom callback POST: parse envelope → verify → decrypt → parse event.
//! Target: under 4 µs per event. Needs `[[bench]] name = "callback" harness = false`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tagsync::wecom::crypto::{CallbackCrypto, build_envelope, parse_envelope};
use tagsync::wecom::event::{EventKind, WecomEvent};

const EDIT_EVENT: &str = "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>\
<FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime>\
<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]></Event>\
<ChangeType><![CDATA[edit_external_contact]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID>\
<ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mAAAA]]></ExternalUserID></xml>";

fn callback(c: &mut Criterion) {
    // Set B's app credentials (wecom-api.md §4.5).
    let crypto = CallbackCrypto::new(
        "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
        "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
        "ww1436e0e65a779aee",
    )
    .unwrap();
    let (ts, nonce) = ("1476422779", "1597212914");
    let encrypt = crypto.encrypt(EDIT_EVENT);
    let sig = crypto.signature(ts, nonce, &encrypt);
    let body = build_envelope("ww1436e0e65a779aee", "1000002", &encrypt);

    c.bench_function(
        "callback: envelope+verify+decrypt+parse (edit_external_contact)",
        |b| {
            b.iter(|| {
                let env = parse_envelope(black_box(&body)).unwrap();
                crypto
                    .verify(black_box(&sig), ts, nonce, &env.encrypt)
                    .unwrap();
                let xml = crypto.decrypt(&env.encrypt).unwrap();
                let event = WecomEvent::parse(&xml).unwrap();
                debug_assert!(matches!(event.kind, EventKind::ContactChange { .. }));
                event
            })
        },
    );
}

criterion_group!(benches, callback);
criterion_main!(benches);
