//! Checks of a container's effective security context that the kubelet makes before it asks
//! the runtime for a container: `runAsNonRoot` against the user the container would run as.
//! Pure: the image's user comes from the runtime's ImageStatus, passed in.

use k8s_openapi::api::core::v1::{Container, Pod};
use kinglet_proto::v1;

use super::podspec::ConfigError;

/// `name_namespace(uid)`, the kubelet's way of naming a pod in messages.
pub fn format_pod(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or(""),
        m.namespace.as_deref().unwrap_or("default"),
        m.uid.as_deref().unwrap_or("")
    )
}

/// The image's user as the CRI reports it: a uid, else a user name, else (neither) root.
fn image_user(image: &v1::Image) -> (Option<i64>, &str) {
    match (&image.uid, image.username.as_str()) {
        (Some(uid), _) => (Some(uid.value), ""),
        (None, name) if !name.is_empty() => (None, name),
        (None, _) => (Some(0), ""),
    }
}

/// The kubelet always names a container's user (its runAsUser, else the image's uid, else its
/// user name, else root) and the runtime refuses a runAsGroup without one. Kinglet fills the
/// user in the same way, but only when a runAsGroup would otherwise arrive alone, so the
/// image's own `user:group` stays in force everywhere else.
pub fn complete_user(cfg: &mut v1::ContainerConfig, image: Option<&v1::Image>) {
    let Some(sc) = cfg.linux.as_mut().and_then(|l| l.security_context.as_mut()) else {
        return;
    };
    if sc.run_as_group.is_none() || sc.run_as_user.is_some() || !sc.run_as_username.is_empty() {
        return;
    }
    match image.map(image_user).unwrap_or((Some(0), "")) {
        (Some(uid), _) => sc.run_as_user = Some(v1::Int64Value { value: uid }),
        (None, name) => sc.run_as_username = name.to_owned(),
    }
}

/// The kubelet's runAsNonRoot check. The effective `runAsNonRoot` and `runAsUser` are the
/// container's, else the pod's. With runAsNonRoot true: an explicit runAsUser must not be 0;
/// without one, the image's user must be numeric and not 0. `image` is the ImageStatus of the
/// container's image (None: unknown yet, nothing to check against).
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    image: Option<&v1::Image>,
) -> Result<(), ConfigError> {
    let csc = c.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let non_root = csc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|s| s.run_as_non_root));
    if non_root != Some(true) {
        return Ok(());
    }
    let who = || format!("(pod: {:?}, container: {})", format_pod(pod), c.name);
    let run_as_user = csc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user));
    if let Some(uid) = run_as_user {
        if uid == 0 {
            return Err(ConfigError(format!(
                "container's runAsUser breaks non-root policy {}",
                who()
            )));
        }
        return Ok(());
    }
    let Some(image) = image else {
        return Ok(());
    };
    match image_user(image) {
        (None, name) => Err(ConfigError(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root {}",
            who()
        ))),
        (Some(0), _) => Err(ConfigError(format!(
            "container has runAsNonRoot and image will run as root {}",
            who()
        ))),
        (Some(uid), _) if !(0..=i64::from(i32::MAX)).contains(&uid) => Err(ConfigError(format!(
            "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be 1-({})): must be between 0 and {}, inclusive {}",
            i32::MAX,
            i32::MAX,
            who()
        ))),
        (Some(_), _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(pod_sc: &str, c_sc: &str) -> Pod {
        let y = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, uid: u1}}\nspec:\n  securityContext: {pod_sc}\n  containers:\n  - name: c\n    image: b\n    securityContext: {c_sc}\n"
        );
        match kinglet_manifest::parse("t", &y).unwrap().remove(0) {
            kinglet_manifest::Object::Pod(p) => *p,
            _ => panic!(),
        }
    }

    #[test]
    fn a_group_alone_gets_the_image_user_like_the_kubelet_gives() {
        let cfg = |group: Option<i64>, user: Option<i64>| v1::ContainerConfig {
            linux: Some(v1::LinuxContainerConfig {
                security_context: Some(v1::LinuxContainerSecurityContext {
                    run_as_group: group.map(|value| v1::Int64Value { value }),
                    run_as_user: user.map(|value| v1::Int64Value { value }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sc = |c: &v1::ContainerConfig| {
            let s = c.linux.as_ref().unwrap().security_context.clone().unwrap();
            (s.run_as_user.map(|u| u.value), s.run_as_username)
        };
        let img = |uid: Option<i64>, name: &str| v1::Image {
            uid: uid.map(|value| v1::Int64Value { value }),
            username: name.into(),
            ..Default::default()
        };
        let mut c = cfg(Some(3000), None);
        complete_user(&mut c, Some(&img(Some(1002), "")));
        assert_eq!(sc(&c), (Some(1002), String::new()));
        let mut c = cfg(Some(3000), None);
        complete_user(&mut c, Some(&img(None, "www-data")));
        assert_eq!(sc(&c), (None, "www-data".to_string()));
        let mut c = cfg(Some(3000), None);
        complete_user(&mut c, None);
        assert_eq!(sc(&c), (Some(0), String::new()));
        // Untouched: a user already given, or no group.
        let mut c = cfg(Some(3000), Some(5));
        complete_user(&mut c, Some(&img(Some(1002), "")));
        assert_eq!(sc(&c), (Some(5), String::new()));
        let mut c = cfg(None, None);
        complete_user(&mut c, Some(&img(Some(1002), "")));
        assert_eq!(sc(&c), (None, String::new()));
    }

    fn image(uid: Option<i64>, name: &str) -> v1::Image {
        v1::Image {
            uid: uid.map(|value| v1::Int64Value { value }),
            username: name.into(),
            ..Default::default()
        }
    }

    fn check(p: &Pod, img: &v1::Image) -> Result<(), String> {
        let c = &p.spec.as_ref().unwrap().containers[0];
        verify_run_as_non_root(p, c, Some(img)).map_err(|e| e.0)
    }

    #[test]
    fn root_images_are_refused_under_run_as_non_root() {
        let p = pod("{runAsNonRoot: true}", "{}");
        assert_eq!(
            check(&p, &image(Some(0), "")).unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"web_default(u1)\", container: c)"
        );
        // No user in the image at all: root.
        assert!(check(&p, &image(None, ""))
            .unwrap_err()
            .contains("will run as root"));
        assert_eq!(check(&p, &image(Some(1000), "")), Ok(()));
        assert_eq!(
            check(&p, &image(None, "nobody")).unwrap_err(),
            "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: \"web_default(u1)\", container: c)"
        );
        assert!(check(&p, &image(Some(1 << 40), ""))
            .unwrap_err()
            .contains("invalid user id"));
    }

    #[test]
    fn run_as_user_decides_before_the_image_and_the_container_wins() {
        let p = pod("{runAsNonRoot: true, runAsUser: 1000}", "{}");
        assert_eq!(check(&p, &image(Some(0), "")), Ok(()));
        let p = pod("{runAsNonRoot: true, runAsUser: 1000}", "{runAsUser: 0}");
        assert_eq!(
            check(&p, &image(Some(1000), "")).unwrap_err(),
            "container's runAsUser breaks non-root policy (pod: \"web_default(u1)\", container: c)"
        );
        let p = pod("{runAsNonRoot: true}", "{runAsNonRoot: false}");
        assert_eq!(check(&p, &image(Some(0), "")), Ok(()));
        let p = pod("{}", "{runAsNonRoot: true, runAsUser: 5}");
        assert_eq!(check(&p, &image(None, "root")), Ok(()));
        let p = pod("{}", "{}");
        assert_eq!(check(&p, &image(Some(0), "")), Ok(()));
    }
}
