//! Unit tests of `kinglet create`'s object builders: the objects kubectl's generators make.

use super::*;

#[test]
fn deployment_as_kubectl_builds_it() {
    let d = deployment(
        "web",
        "prod",
        &["registry.example/team/nginx:1.25".into(), "nginx".into()],
        3,
        Some(80),
        &[],
    );
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["metadata"]["namespace"], "prod");
    assert_eq!(d["metadata"]["labels"]["app"], "web");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(d["spec"]["template"]["metadata"]["labels"]["app"], "web");
    let c = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(c[0]["name"], "nginx");
    assert_eq!(c[0]["image"], "registry.example/team/nginx:1.25");
    assert_eq!(c[0]["ports"][0]["containerPort"], 80);
    assert_eq!(c[1]["name"], "nginx-1", "a second container of one image");
    assert!(c[0].get("command").is_none());
    // The manifest parser takes it as any applied Deployment.
    let (objs, errs) = kinglet_manifest::parse_each("create", &d.to_string());
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(objs.len(), 1);
}

#[test]
fn container_names_from_images() {
    assert_eq!(container_name("nginx"), "nginx");
    assert_eq!(container_name("k8s.gcr.io/echoserver:1.4"), "echoserver");
    assert_eq!(container_name("busybox@sha256:abcd"), "busybox");
    assert_eq!(container_name("localhost:5000/My_App:v1"), "my-app");
}

#[test]
fn job_and_cronjob_templates() {
    let cmd = vec!["echo".to_owned(), "hi".to_owned()];
    let j = job("pi", "default", "perl", &cmd);
    let pod = &j["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["containers"][0]["name"], "pi");
    assert_eq!(pod["containers"][0]["command"], json!(["echo", "hi"]));
    let cj = cronjob(
        "hello",
        "default",
        "busybox",
        "*/1 * * * *",
        "OnFailure",
        &cmd,
    )
    .unwrap();
    assert_eq!(cj["spec"]["schedule"], "*/1 * * * *");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "OnFailure");
    assert!(cronjob("x", "default", "busybox", "@daily", "Always", &[]).is_err());
    for o in [j, cj] {
        let (objs, errs) = kinglet_manifest::parse_each("create", &o.to_string());
        assert!(errs.is_empty() && objs.len() == 1, "{errs:?}");
    }
}

#[test]
fn a_job_from_a_cronjob_is_a_manual_owned_run() {
    let cj = cronjob("hello", "default", "busybox", "@hourly", "OnFailure", &[]).unwrap();
    let mut cj = cj;
    cj["metadata"]["uid"] = "u-1".into();
    let j = job_from_cronjob("hello-manual", "default", &cj).unwrap();
    assert_eq!(
        j["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(j["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert_eq!(j["spec"], cj["spec"]["jobTemplate"]["spec"]);
}

#[test]
fn configmaps_and_secrets_from_sources() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("game.properties"), "lives=3\n").unwrap();
    std::fs::write(dir.path().join("blob.bin"), [0xff, 0xfe]).unwrap();
    let env = dir.path().join("app.env");
    std::fs::write(&env, "# comment\n\nMODE=fast\nLEVEL = 2\n").unwrap();
    let named = dir.path().join("game.properties");
    let s = Sources {
        from_literal: vec!["special.how=very".into()],
        from_file: vec![
            dir.path().join("blob.bin").display().to_string(),
            format!("renamed={}", named.display()),
        ],
        from_env_file: vec![env],
    };
    let keys = read_sources(&s).unwrap();
    let cm = configmap("game", "default", &keys);
    assert_eq!(cm["data"]["renamed"], "lives=3\n");
    assert_eq!(cm["data"]["special.how"], "very");
    assert_eq!(cm["data"]["MODE"], "fast");
    assert_eq!(cm["data"]["LEVEL"], " 2");
    assert_eq!(cm["binaryData"]["blob.bin"], "//4=");
    let sec = secret("db", "default", "Opaque", &keys);
    assert_eq!(sec["type"], "Opaque");
    assert_eq!(sec["data"]["special.how"], "dmVyeQ==");

    // A directory: a key per file.
    let only_dir = Sources {
        from_file: vec![dir.path().display().to_string()],
        ..Sources::default()
    };
    let keys = read_sources(&only_dir).unwrap();
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["app.env", "blob.bin", "game.properties"]);

    // Duplicate and invalid keys are refused, naming the key.
    let dup = Sources {
        from_literal: vec!["a=1".into(), "a=2".into()],
        ..Sources::default()
    };
    let e = read_sources(&dup).unwrap_err().to_string();
    assert!(e.contains("cannot add key a"), "{e}");
    let bad = Sources {
        from_literal: vec!["a/b=1".into()],
        ..Sources::default()
    };
    assert!(read_sources(&bad)
        .unwrap_err()
        .to_string()
        .contains("\"a/b\""));
    let no_eq = Sources {
        from_literal: vec!["novalue".into()],
        ..Sources::default()
    };
    assert!(read_sources(&no_eq).is_err());
}

#[test]
fn docker_registry_secret_is_a_docker_config() {
    let auth = registry_auth(
        "registry.example:5000",
        "tester",
        "s3cret",
        Some("t@example.com"),
    );
    let e = &auth["auths"]["registry.example:5000"];
    assert_eq!(e["username"], "tester");
    assert_eq!(e["auth"], b64(b"tester:s3cret"));
    assert_eq!(e["email"], "t@example.com");
    let data = vec![(
        ".dockerconfigjson".to_owned(),
        auth.to_string().into_bytes(),
    )];
    let s = secret(
        "regcred",
        "default",
        "kubernetes.io/dockerconfigjson",
        &data,
    );
    assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
    let (objs, errs) = kinglet_manifest::parse_each("create", &s.to_string());
    assert!(errs.is_empty() && objs.len() == 1, "{errs:?}");
}
