//! `hostUsers: false`: the pod's sandbox and containers get its own mapping from the node's
//! range (two blocks here, from 655360), kept until the pod is removed; an exhausted range
//! is a FailedCreatePodSandBox event and a waiting reason until a block is free, and so is a
//! runtime that cannot make the pod's user namespace (old kernel, unsearchable run root).

use super::*;

const FIRST: u32 = 655360;

fn own_users() -> Pod {
    pod("  hostUsers: false\n  containers:\n  - {name: app, image: 'img:1'}\n")
}

fn mapping(u: &Option<v1::UserNamespace>) -> Option<(i32, u32, u32, u32)> {
    u.as_ref().map(|u| {
        let m = &u.uids[0];
        assert_eq!(u.uids, u.gids);
        (u.mode, m.container_id, m.host_id, m.length)
    })
}

#[tokio::test(start_paused = true)]
async fn a_pod_with_host_users_false_gets_its_own_range_until_removed() {
    let mut n = Node::new(own_users());
    n.pass().await;
    assert!(n.running("app"));
    let pod_mode = v1::NamespaceMode::Pod as i32;
    let want = Some((pod_mode, 0, FIRST, 65536));
    let asked = n.fake.userns_requests();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0].0, "sandbox");
    assert_eq!(mapping(&asked[0].1), want);
    assert_eq!((asked[1].0.as_str(), mapping(&asked[1].1)), ("app", want));
    assert_eq!(n.env.userns.get(UID), Some(FIRST));
    // A restarted container keeps the pod's mapping.
    n.fake.exit("app", 1);
    n.pass().await;
    assert_eq!(mapping(&n.fake.userns_requests()[2].1), want);
    // Removed: the range is free again.
    remove(&mut n.state, &n.env).await.unwrap();
    assert_eq!(n.env.userns.get(UID), None);
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_range_is_an_event_until_a_range_is_freed() {
    let mut n = Node::new(own_users());
    n.env.userns.get_or_create("other-1").unwrap();
    n.env.userns.get_or_create("other-2").unwrap();
    n.pass().await;
    assert_eq!(n.fake.sandbox_count(), 0);
    assert!(
        n.has_event("FailedCreatePodSandBox", "no free user namespace"),
        "{:?}",
        n.events()
    );
    let (reason, msg) = n.waiting("app").unwrap();
    assert_eq!(reason, "ContainerCreating");
    assert!(msg.contains("all 2 ranges of 65536 IDs"), "{msg}");
    // Retried passes do not repeat the event.
    n.pass().await;
    let failed = n
        .events()
        .iter()
        .filter(|(r, _)| r == "FailedCreatePodSandBox")
        .count();
    assert_eq!(failed, 1);
    n.env.userns.release("other-2");
    n.pass().await;
    assert!(n.running("app"));
    assert_eq!(n.env.userns.get(UID), Some(FIRST + 65536));
}

#[tokio::test(start_paused = true)]
async fn pods_with_host_users_get_no_user_namespace() {
    let mut n = Node::new(simple("Always"));
    n.pass().await;
    assert!(n.fake.userns_requests().iter().all(|(_, u)| u.is_none()));
    assert_eq!(n.env.userns.get(UID), None);
}

#[tokio::test(start_paused = true)]
async fn a_runtime_that_cannot_make_the_user_namespace_is_a_failed_sandbox_event() {
    let mut n = Node::new(own_users());
    let why = "user namespaces need Linux 6.3 or newer (this kernel: 6.1)";
    n.fake.fail_sandboxes(Some(why));
    let failed = reconcile(&n.pod, &n.world, &mut n.state, &n.env).await;
    assert!(failed.is_err(), "retried after the back-off");
    assert!(
        n.has_event(
            "FailedCreatePodSandBox",
            &format!("Failed to create pod sandbox: {why}")
        ),
        "{:?}",
        n.events()
    );
    let (reason, msg) = n.waiting("app").unwrap();
    assert_eq!(reason, "ContainerCreating");
    assert!(msg.contains(why), "{msg}");
    // The pod keeps its range for the retry, which then succeeds.
    assert_eq!(n.env.userns.get(UID), Some(FIRST));
    n.fake.fail_sandboxes(None);
    n.pass().await;
    assert!(n.running("app"));
    assert_eq!(n.env.userns.get(UID), Some(FIRST));
}
