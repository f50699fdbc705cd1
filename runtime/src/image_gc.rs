//! Image garbage collection with the kubelet's disk thresholds: when the image file system is
//! at least `high`% used, remove unused images, least recently used first, until usage is
//! below `low`%. An image is in use when a container record names it; such images, and images
//! used more recently than the minimum age, are never removed. `high` = 100 disables GC.
//!
//! [`plan`] is a pure function (tested here); [`Runtime::image_gc_once`] feeds it the store,
//! the container records and `statvfs` of the store's file system.

use std::collections::HashSet;
use std::time::Duration;

use kinglet_cri::CriError;

use super::{blocking, now_nanos, Runtime};

/// An image as GC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcImage {
    pub id: String,
    /// Bytes freed by removing it (its blob sizes; shared layers make this an estimate).
    pub size: u64,
    /// Unix nanoseconds of its last use (pull or container creation).
    pub last_used: i64,
    pub in_use: bool,
}

/// GC settings (percentages of the file system's capacity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    pub high_percent: u8,
    pub low_percent: u8,
    /// Images used more recently than this are kept.
    pub min_age: Duration,
}

/// Which images to remove, in order, given the file system's `capacity` and `available`
/// bytes at time `now` (unix nanoseconds).
pub fn plan(
    images: &[GcImage],
    capacity: u64,
    available: u64,
    policy: GcPolicy,
    now: i64,
) -> Vec<String> {
    if policy.high_percent >= 100 || capacity == 0 {
        return Vec::new();
    }
    let used_percent = 100 - (u128::from(available) * 100 / u128::from(capacity)) as u64;
    if used_percent < u64::from(policy.high_percent) {
        return Vec::new();
    }
    let target_available = capacity / 100 * (100 - u64::from(policy.low_percent));
    let mut to_free = target_available.saturating_sub(available);
    let min_age = i64::try_from(policy.min_age.as_nanos()).unwrap_or(i64::MAX);
    let mut candidates: Vec<&GcImage> = images
        .iter()
        .filter(|i| !i.in_use && now.saturating_sub(i.last_used) >= min_age)
        .collect();
    candidates.sort_by_key(|i| i.last_used);
    let mut out = Vec::new();
    for c in candidates {
        if to_free == 0 {
            break;
        }
        out.push(c.id.clone());
        to_free = to_free.saturating_sub(c.size);
    }
    out
}

impl Runtime {
    /// Note that an image was used now (pulled, or a container created from it).
    pub(crate) fn touch_image(&self, id: &str) {
        self.image_last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), now_nanos());
    }

    /// One GC pass: measure, plan, remove. Returns the ids removed.
    pub async fn image_gc_once(&self) -> Result<Vec<String>, CriError> {
        let policy = GcPolicy {
            high_percent: self.config.image_gc_high_threshold_percent,
            low_percent: self.config.image_gc_low_threshold_percent,
            min_age: Duration::from_secs(self.config.image_gc_min_age_secs),
        };
        let mut in_use = HashSet::new();
        for c in self.store.all_containers().await {
            let r = c.record.lock().await;
            in_use.insert(r.image_id.clone());
            // Images mounted as image volumes are in use too.
            in_use.extend(
                r.mounts
                    .iter()
                    .filter_map(|m| m.image.as_ref())
                    .map(|i| i.1.clone()),
            );
        }
        let images = self.images.clone();
        let root = self.paths.images();
        let (list, fs) = blocking("image gc", move || {
            let fs = nix::sys::statvfs::statvfs(&root)
                .map_err(|e| CriError::internal(format!("statvfs {}", root.display()), e))?;
            Ok((images.list(), fs))
        })
        .await?;
        let frsize = fs.fragment_size();
        let capacity = fs.blocks() * frsize;
        let available = fs.blocks_available() * frsize;
        let last_used = self
            .image_last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let gc: Vec<GcImage> = list
            .iter()
            .map(|r| GcImage {
                id: r.id.clone(),
                size: r.size,
                last_used: last_used.get(&r.id).copied().unwrap_or(r.created_at),
                in_use: in_use.contains(&r.id),
            })
            .collect();
        let victims = plan(&gc, capacity, available, policy, now_nanos());
        let mut removed = Vec::new();
        for id in victims {
            // Re-check under the same rule RemoveImage applies: a container may have been
            // created from it meanwhile.
            let req = kinglet_proto::v1::RemoveImageRequest {
                image: Some(kinglet_proto::v1::ImageSpec {
                    image: id.clone(),
                    ..Default::default()
                }),
            };
            match self.remove_image(req).await {
                Ok(()) => {
                    tracing::info!(image = %id, "image garbage-collected");
                    removed.push(id);
                }
                Err(err) => tracing::debug!(image = %id, %err, "image gc skipped an image"),
            }
        }
        Ok(removed)
    }

    /// Run [`Runtime::image_gc_once`] every `image-gc-interval-secs`.
    pub async fn image_gc_loop(self: std::sync::Arc<Self>) {
        let every = Duration::from_secs(self.config.image_gc_interval_secs.max(1));
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(err) = self.image_gc_once().await {
                tracing::warn!(error = %kinglet_cri::chain(&err), "image gc failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1 << 30;

    fn img(id: &str, size: u64, last_used: i64, in_use: bool) -> GcImage {
        GcImage {
            id: id.into(),
            size,
            last_used,
            in_use,
        }
    }

    fn policy() -> GcPolicy {
        GcPolicy {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::ZERO,
        }
    }

    #[test]
    fn below_the_high_threshold_nothing_is_removed() {
        let imgs = [img("a", GB, 1, false)];
        // 84% used.
        assert!(plan(&imgs, 100 * GB, 16 * GB, policy(), 10).is_empty());
    }

    #[test]
    fn least_recently_used_unused_images_go_first_until_low() {
        let imgs = [
            img("new", 3 * GB, 30, false),
            img("old", 3 * GB, 10, false),
            img("used", 50 * GB, 0, true),
            img("mid", 3 * GB, 20, false),
        ];
        // 90% used: free down to 80% = 10 GB: old then mid then new (3+3+3 < 10 → all three).
        assert_eq!(
            plan(&imgs, 100 * GB, 10 * GB, policy(), 100),
            ["old", "mid", "new"]
        );
        // 86% used: 6 GB to free: old and mid.
        assert_eq!(
            plan(&imgs, 100 * GB, 14 * GB, policy(), 100),
            ["old", "mid"]
        );
    }

    #[test]
    fn disabled_at_100_and_min_age_respected() {
        let imgs = [img("a", GB, 95, false), img("b", GB, 10, false)];
        let mut p = policy();
        p.high_percent = 100;
        assert!(plan(&imgs, 100 * GB, 0, p, 100).is_empty());
        let mut p = policy();
        p.min_age = Duration::from_nanos(50);
        assert_eq!(plan(&imgs, 100 * GB, 0, p, 100), ["b"]);
    }
}
