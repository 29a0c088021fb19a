//! The control-room page in a real headless Chromium (driven over WebDriver by chromedriver),
//! against the citywatch binary, a Mosquitto broker and a simulated district: the page loads,
//! tiles show live counts, an injected trapped passenger appears within seconds, the
//! operator acknowledges it in the page and the API shows it, and a maintenance unit's view
//! holds only that unit's alerts. Screenshots go to `target/tmp/page/`.

mod common;

use common::{
    Citywatch, Mosquitto, default_rules, free_port, get_as, msg, now_ms, publish_all,
    reference_copy, repo, token, trapped,
};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port, and a headless Chromium session through it.
async fn browser(profile: &Path) -> (Killed, Client) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
    let driver = Killed(driver);
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1920,1080",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "no WebDriver session: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    (driver, client)
}

/// Evaluates `script` (a function body returning a value) in the page until `done` holds.
async fn wait_js(c: &Client, what: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = c.execute(script, vec![]).await.unwrap_or(Value::Null);
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what} (last {v})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("page");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), c.screenshot().await.unwrap()).unwrap();
}

/// Clicks the element `css` finds, once it is there.
async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Opens the page as the holder of `token` (handed over in the address, as the demo does).
async fn open_as(c: &Client, cw: &Citywatch, token: &str) {
    c.goto("about:blank").await.unwrap();
    c.goto(&cw.url(&format!("/#token={token}"))).await.unwrap();
    wait_js(
        c,
        "the page is ready",
        "return document.body.classList.contains('ready')",
        |v| v == &json!(true),
    )
    .await;
}

/// Device ids of the alerts listed now.
const LISTED: &str =
    "return [...document.querySelectorAll('#alerts li[data-device]')].map(li => li.dataset.device)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_room_page_works_end_to_end_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start();
    let mqtt = format!("mqtt://127.0.0.1:{}", broker.port);
    let examples = repo().join("examples/reference");
    // Two elevators the simulator does not drive, so only this test speaks for them.
    let reference = reference_copy(tmp.path());
    let elevators = std::fs::read_to_string(reference.join("elevators.csv")).unwrap();
    std::fs::write(
        reference.join("elevators.csv"),
        format!(
            "{elevators}E-T1,测试大厦,yuzhong,29.551,106.56,MU-02,1.0,12\n\
             E-T2,测试二号楼,yuzhong,29.552,106.53,MU-01,1.0,12\n"
        ),
    )
    .unwrap();
    let rules = default_rules();
    let data = tmp.path().join("data");
    let cw = Citywatch::start_with(
        &mqtt,
        None,
        &data,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--reference",
            reference.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let operator = token(&data, "值班员张三", "operator");
    let mu01 = token(&data, "江北维保", "unit:MU-01");

    // The simulated district, live, without injected incidents.
    let _sim = Killed(
        Command::new(env!("CARGO_BIN_EXE_citywatch"))
            .args(["simulate", "--mqtt", &mqtt, "--reference"])
            .arg(&examples)
            .args(["--seconds", "600", "--incident-every", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let (_driver, c) = browser(&tmp.path().join("chromium")).await;
    open_as(&c, &cw, &operator).await;
    let who = c
        .find(Locator::Css("#who"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        who.contains("值班员张三") && who.contains("operator"),
        "{who}"
    );
    // Counters from the simulated district reach the tiles.
    wait_js(
        &c,
        "online elevators and cameras on the tiles",
        "return ['elevators.online', 'cameras.online'].map(s =>
           parseInt(document.querySelector(`[data-series=\"${s}\"]`)?.textContent || '0'))",
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().all(|n| n.as_i64() > Some(0)))
        },
    )
    .await;
    // The map draws the jurisdictions and the devices.
    let drawn = c
        .execute(
            "return [document.querySelectorAll('#map .area').length,
                     document.querySelectorAll('#map .dev').length]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(drawn[0], json!(3), "three jurisdiction polygons");
    assert!(
        drawn[1].as_u64().unwrap() >= 60,
        "devices on the map: {drawn}"
    );

    // A trapped passenger in each test elevator: both appear, live, in the operator's list.
    let ts = now_ms();
    publish_all(
        broker.port,
        "page-test",
        &[trapped("E-T1", ts), trapped("E-T2", ts)],
    )
    .await;
    let seen_at = Instant::now();
    wait_js(&c, "both trapped alerts listed", LISTED, |v| {
        let v = v.to_string();
        v.contains("elevator:E-T1") && v.contains("elevator:E-T2")
    })
    .await;
    eprintln!(
        "trapped alerts listed {:?} after publishing",
        seen_at.elapsed()
    );
    shot(&c, "operator-list.png").await;

    // Acknowledge E-T1's alert in the page; the API shows who did.
    let row = c
        .find(Locator::Css(
            "#alerts li[data-device='elevator:E-T1'][data-state='firing']",
        ))
        .await
        .unwrap();
    let id = row.attr("data-alert-id").await.unwrap().unwrap();
    row.click().await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#do-ack"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let acked = loop {
        let a = cw.get(&format!("/api/v1/alerts/{id}")).await;
        if let Some(by) = a["alert"]["body"]["ops"]["acked_by"].as_str() {
            break by.to_owned();
        }
        assert!(Instant::now() < deadline, "never acknowledged: {a}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(acked, "值班员张三");
    wait_js(
        &c,
        "the detail shows the acknowledgement",
        "return document.querySelector('[data-field=\"acked\"]')?.textContent || ''",
        |v| v.as_str().is_some_and(|s| s.contains("值班员张三")),
    )
    .await;
    // Why it fired: the event its rule matched, and the rule's filter part by part over it.
    let why = wait_js(
        &c,
        "the detail shows why the alert fired",
        "return [document.querySelector('#why-events')?.textContent || '',
                 document.querySelector('#why-deciding [data-role=filter] li')?.dataset.outcome || '']",
        |v| v[1] == json!("value"),
    )
    .await;
    assert!(
        why[0].as_str().unwrap().contains("cw/v1/elevator/E-T1/"),
        "{why}"
    );
    shot(&c, "operator-detail.png").await;

    // A rodent seen by a kitchen camera: the alert's detail links the camera's image.
    let snapshot = "https://evidence.example/K-S01/C1/rodent-1.jpg";
    publish_all(
        broker.port,
        "page-test-kitchen",
        &[msg(
            "cw/v1/kitchen/K-S01/camera/C1/detection",
            json!({"ts": now_ms(), "kind": "rodent", "confidence": 0.93, "snapshot": snapshot})
                .to_string(),
        )],
    )
    .await;
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(
            "#alerts li[data-device='kitchen:K-S01'][data-rule='kitchen.hazard']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let link = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("[data-field='evidence'] a"))
        .await
        .unwrap();
    assert_eq!(link.attr("href").await.unwrap().as_deref(), Some(snapshot));

    // The unit MU-01 sees its own alert only, and moves it on in the field.
    open_as(&c, &cw, &mu01).await;
    let listed = wait_js(&c, "the unit's alert listed", LISTED, |v| {
        v.to_string().contains("elevator:E-T2")
    })
    .await;
    assert!(
        !listed.to_string().contains("elevator:E-T1"),
        "MU-01 sees MU-02's alert: {listed}"
    );
    for device in listed.as_array().unwrap() {
        let d = device.as_str().unwrap().trim_start_matches("elevator:");
        let unit = std::fs::read_to_string(reference.join("elevators.csv"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with(&format!("{d},")))
            .map(|l| l.split(',').nth(5).unwrap().to_owned());
        assert_eq!(unit.as_deref(), Some("MU-01"), "{d} is not MU-01's");
    }
    let unit_view = c
        .execute(
            "return document.body.classList.contains('unit-view')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unit_view, json!(true));
    c.find(Locator::Css("#alerts li[data-device='elevator:E-T2']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("[data-field-state='responded']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let alerts = get_as(&cw, &mu01, "/api/v1/alerts?state=firing").await;
    let mine = alerts.as_array().unwrap();
    assert!(!mine.is_empty());
    assert!(
        mine.iter()
            .all(|a| a["body"]["labels"]["maintenance_unit"] == "MU-01")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get_as(&cw, &mu01, "/api/v1/alerts?state=firing").await;
        let responded = v.as_array().unwrap().iter().any(|a| {
            a["body"]["labels"]["elevator_id"] == "E-T2"
                && a["body"]["ops"]["field_state"] == "responded"
        });
        if responded {
            break;
        }
        assert!(Instant::now() < deadline, "E-T2 never responded: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shot(&c, "unit-view.png").await;

    // Complaints due soon, by office: a complaint made in O-JFB's jurisdiction (7 working days
    // to decide) is listed within ten working days; a report in O-CTM's (15) is not.
    let complaint = |id: &str, kind: &str, place: (f64, f64)| {
        msg(
            "cw/v1/complaint/new",
            json!({"ts": now_ms(), "complaint_id": id, "kind": kind, "merchant_name": "解放碑某超市",
                   "category": "price", "lat": place.0, "lon": place.1})
            .to_string(),
        )
    };
    publish_all(
        broker.port,
        "page-test-12315",
        &[
            complaint("C-PAGE-1", "complaint", (29.551, 106.56)),
            complaint("C-PAGE-2", "report", (29.551, 106.58)),
        ],
    )
    .await;
    open_as(&c, &cw, &operator).await;
    click(&c, "[data-tab='complaints']").await;
    // The tab draws its filter once its first list has come: wait for it, not for time.
    wait_js(
        &c,
        "the complaints tab's filter",
        "return document.querySelector('#due-within') !== null",
        |v| *v == json!(true),
    )
    .await;
    c.execute(
        "const s = document.querySelector('#due-within'); s.value = '10'; s.dispatchEvent(new Event('change')); return true",
        vec![],
    )
    .await
    .unwrap();
    let listed = wait_js(
        &c,
        "the complaints due within ten working days, by office",
        "return [...document.querySelectorAll('#complaints section[data-office]')].map(s =>
           s.dataset.office + ':' + [...s.querySelectorAll('li')].map(li => li.dataset.complaintId).join(','))",
        |v| v.to_string().contains("O-JFB:C-PAGE-1"),
    )
    .await;
    assert!(
        !listed.to_string().contains("C-PAGE-2"),
        "a report has 15 working days: {listed}"
    );
    let left = c
        .find(Locator::Css(
            "li[data-complaint-id='C-PAGE-1'] [data-field='days-left']",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(left.contains('7') || left.contains('6'), "{left}");
    shot(&c, "complaints-due.png").await;

    // C-PAGE-1 was made where E-T1 stands, minutes after its trapped alert: one incident in
    // two sources. The operator opens it, sees both members, and closes it with a finding.
    click(&c, "[data-tab='incidents']").await;
    let open = "#incidents li[data-state='open']";
    wait_js(
        &c,
        "the incident of E-T1 listed",
        &format!("return document.querySelector(\"{open}\")?.textContent || ''"),
        |v| v.as_str().is_some_and(|s| s.contains("elevator/E-T1")),
    )
    .await;
    click(&c, open).await;
    let members = wait_js(
        &c,
        "the incident's members",
        "return [...document.querySelectorAll('#incidents tr[data-member]')].map(r => r.dataset.member)",
        |v| v.as_array().is_some_and(|a| a.len() == 2),
    )
    .await;
    let alert = alerts::fingerprint("elevator.trapped_alarm", "E-T1");
    assert_eq!(members, json!([alert, "C-PAGE-1"]));
    shot(&c, "incident.png").await;
    c.execute(
        "document.querySelector('#incident-finding').value = '困人已解救，投诉已回复'; return true",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "#incident-close").await;
    wait_js(
        &c,
        "the incident closed",
        "return document.querySelectorAll(\"#incidents li[data-state='closed']\").length",
        |v| *v == json!(1),
    )
    .await;
    let closed = cw.get("/api/v1/incidents?state=closed").await;
    assert_eq!(closed[0]["finding"], "困人已解救，投诉已回复", "{closed}");
    assert!(
        closed[0]["log"][0]["by"]
            .as_str()
            .unwrap()
            .contains("值班员张三")
    );

    // An admin edits a rule's threshold in the rules view: validated, then applied as a new
    // version that names its author; an invalid edit is refused with its line.
    let admin = token(&data, "规则管理员", "admin");
    open_as(&c, &cw, &admin).await;
    click(&c, "[data-tab='rules']").await;
    let overspeed = "tr[data-rule-id='elevator.overspeed']";
    click(&c, &format!("{overspeed} button.edit")).await;
    wait_js(
        &c,
        "the rule's file in the editor",
        "return document.querySelector('#rule-source').value",
        |v| {
            v.as_str()
                .is_some_and(|s| s.contains("1.15 * ref.elevator"))
        },
    )
    .await;
    let edit = |from: &str, to: &str| {
        format!(
            "const s = document.querySelector('#rule-source'); s.value = s.value.replace('{from}', '{to}'); return s.value.includes('{to}')"
        )
    };
    assert_eq!(
        c.execute(&edit("1.15 *", "1.2 *"), vec![]).await.unwrap(),
        json!(true)
    );
    click(&c, "#rule-apply").await;
    wait_js(
        &c,
        "the edit applied",
        "return document.querySelector('#rule-applied')?.textContent || ''",
        |v| v.as_str().is_some_and(|s| s.contains("elevator.overspeed")),
    )
    .await;
    let rule = cw.get("/api/v1/rules/elevator.overspeed").await;
    assert_eq!(rule["version"], 2, "{rule}");
    assert_eq!(rule["changed_by"], "规则管理员");
    assert!(
        rule["source"]["filter"]
            .as_str()
            .unwrap()
            .contains("1.2 * ref.elevator.rated_speed_mps"),
        "{rule}"
    );
    wait_js(
        &c,
        "the new threshold in the rules view",
        &format!(
            "return document.querySelector(\"{overspeed} [data-threshold='filter']\")?.textContent || ''"
        ),
        |v| v.as_str().is_some_and(|s| s.contains("1.2 * ref.elevator")),
    )
    .await;
    shot(&c, "rules-edit.png").await;

    // The edited rule tried on a message: each part with the value it comes to.
    let message = json!({"topic": "cw/v1/elevator/E0001/status", "payload": {"ts": now_ms(),
        "floor": 3, "in_door_zone": false, "speed_mps": 1.31, "direction": "up", "door": "closed"}});
    let fill = format!(
        "document.querySelector('#explain-rule').value = 'elevator.overspeed'; \
         document.querySelector('#explain-event').value = {}; return true",
        serde_json::to_string(&message.to_string()).unwrap()
    );
    assert_eq!(c.execute(&fill, vec![]).await.unwrap(), json!(true));
    click(&c, "#explain-run").await;
    let parts = wait_js(
        &c,
        "the rule explained for the message",
        "return [...document.querySelectorAll(\"#explain-result [data-role='filter'] li\")] \
           .map((li) => li.querySelector('code').textContent + (li.querySelector(':scope > b')?.textContent || '')).join('\\n')",
        |v| v.as_str().is_some_and(|s| s.contains("event.speed_mps = 1.31")),
    )
    .await;
    let parts = parts.as_str().unwrap();
    assert!(
        parts.contains(
            "1.2 * ref.elevator.rated_speed_mps = 1.2\nref.elevator.rated_speed_mps = 1.0"
        ),
        "{parts}"
    );
    wait_js(
        &c,
        "the reference row the rule read",
        "return document.querySelector('#explain-result [data-role=reference] pre')?.textContent || ''",
        |v| {
            v.as_str()
                .is_some_and(|s| s.contains("\"elevator_id\": \"E0001\""))
        },
    )
    .await;
    shot(&c, "rules-explain.png").await;
    // Why the in-zone trapped rule did not fire for E-T1: its car stands outside the zone.
    let ask = "document.querySelector('#why-not-rule').value = 'elevator.trapped_in_zone'; \
               document.querySelector('#why-not-group').value = 'E-T1'; return true";
    assert_eq!(c.execute(ask, vec![]).await.unwrap(), json!(true));
    click(&c, "#why-not-run").await;
    let verdict = wait_js(
        &c,
        "why the rule did not fire",
        "return [document.querySelector('#why-not-verdict')?.textContent || '',
                 document.querySelectorAll('#why-not-result tr[data-holds=false]').length]",
        |v| v[0].as_str().is_some_and(|s| !s.is_empty()),
    )
    .await;
    assert!(
        verdict[0]
            .as_str()
            .unwrap()
            .starts_with("its filter did not hold")
            && verdict[1] == 1,
        "{verdict}"
    );
    assert_eq!(
        c.execute(&edit("1.2 *", "1.2 * *"), vec![]).await.unwrap(),
        json!(true)
    );
    click(&c, "#rule-apply").await;
    wait_js(
        &c,
        "the invalid edit refused",
        "return document.querySelector('#rule-result ul.bad li')?.textContent || ''",
        |v| v.as_str().is_some_and(|s| !s.is_empty()),
    )
    .await;
    let rule = cw.get("/api/v1/rules/elevator.overspeed").await;
    assert_eq!(
        rule["version"], 2,
        "the invalid edit changed nothing: {rule}"
    );
    c.close().await.unwrap();
}
