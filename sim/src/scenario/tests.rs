use super::*;

#[test]
fn probe() {
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/steady-state.toml"
    ))
    .unwrap();
    match Scenario::from_str(&base, "steady-state.toml") {
        Ok(s) => println!("{s:#?}"),
        Err(e) => println!("{e:#}"),
    }
    for (from, to) in [
        ("latency = {", "lattency = {"),
        ("kind = \"success_rate\"", "kind = \"sucess_rate\""),
        ("replicas = 3\nlatency", "replicas = 0\nlatency"),
        ("rate = 100", "rate = 100\nconcurrency = 3"),
        ("duration = \"30s\"", "duration = \"30 parsecs\""),
        ("duration = \"30s\"", "duration = 30"),
        ("group = \"server\"", "grop = \"server\""),
        ("endpoint = \"server-2\"", "endpoint = \"server-9\""),
        ("targets = [\"server\"]", "targets = [\"srever\"]"),
        ("min = { min", "x"),
        ("seeds = [1, 2, 3]", "seeds = [1, -2, 3]"),
        ("max = \"20ms\"", "max = 20"),
        ("[network]", "[network]\nloss = 1.5"),
        ("[network]", "[netwrk]"),
        (
            "replicas = 3\nlatency",
            "replicas = 3\nhosts.server-4 = { weight = 2 }\nlatency",
        ),
        ("min = { min = \"1ms\", max = \"2ms\" }", "x"),
    ] {
        let text = base.replacen(from, to, 1);
        match Scenario::from_str(&text, "x.toml") {
            Ok(_) => println!("OK?? {to}"),
            Err(e) => println!("{e:#}"),
        }
    }
    let latency = base.replace(
        "latency = { min = \"1ms\", max = \"2ms\" }",
        "latency = { min = \"3ms\", max = \"2ms\" }",
    );
    println!("{:#}", Scenario::from_str(&latency, "x.toml").unwrap_err());
    let latency = base.replace(
        "latency = { min = \"1ms\", max = \"2ms\" }",
        "latency = { min = \"3ms\", mux = \"2ms\" }",
    );
    println!("{:#}", Scenario::from_str(&latency, "x.toml").unwrap_err());
    let desc = base.replace("description", "#description");
    println!("{:#}", Scenario::from_str(&desc, "x.toml").unwrap_err());
}
