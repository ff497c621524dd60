//! The user namespace of a container made from an image (containerd's `WithUserNamespace`):
//! its uid and gid maps checked, and the spec given the namespace, the maps, and what runc
//! needs with them.
//!
//! - Both maps must map container id 0: runc refuses a user namespace whose root is not
//!   mapped (`HostRootUID`), and the remapped rootfs is owned by root's host id.
//! - The ranges of one map may overlap neither inside nor on the host (the kernel refuses
//!   such a map when runc writes it).
//! - `/sys`: the kernel mounts a sysfs only for a user namespace that owns the network
//!   namespace; with `--net host` the container's `/sys` is a read-only recursive bind of
//!   the host's (as runc's rootless spec does).
//! - `/dev/pts` gets `gid=5` only if gid 5 is mapped (else the mount fails).
//! - Devices: runc bind-mounts them itself in a user namespace (mknod is not allowed).

use crate::error::{Error, Result};
use crate::types::IdMap;
use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Mount, Spec,
};
use std::path::PathBuf;

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// The uid and gid maps of a user namespace, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNs {
    /// The uid map.
    pub uids: Vec<IdMap>,
    /// The gid map.
    pub gids: Vec<IdMap>,
}

impl UserNs {
    /// The user namespace `--uidmap` and `--gidmap` ask for: `None` when both are empty;
    /// one given alone maps both uids and gids. Each map is checked ([`check_map`]).
    pub fn from_maps(uid_maps: &[IdMap], gid_maps: &[IdMap]) -> Result<Option<UserNs>> {
        let (uids, gids) = match (uid_maps.is_empty(), gid_maps.is_empty()) {
            (true, true) => return Ok(None),
            (false, true) => (uid_maps.to_vec(), uid_maps.to_vec()),
            (true, false) => (gid_maps.to_vec(), gid_maps.to_vec()),
            (false, false) => (uid_maps.to_vec(), gid_maps.to_vec()),
        };
        check_map("--uidmap", &uids)?;
        check_map("--gidmap", &gids)?;
        Ok(Some(UserNs { uids, gids }))
    }

    /// The host uid of container uid `id`, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        to_host(&self.uids, id)
    }

    /// The host gid of container gid `id`, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        to_host(&self.gids, id)
    }

    /// A name for the maps, for a snapshot key: `<uid map>/<gid map>`, each range
    /// `container:host:size`, ranges joined by `,`.
    pub fn key(&self) -> String {
        let show = |m: &[IdMap]| m.iter().map(IdMap::to_string).collect::<Vec<_>>().join(",");
        format!("{}/{}", show(&self.uids), show(&self.gids))
    }
}

/// The host id of container id `id` in `map`, if a range maps it.
pub fn to_host(map: &[IdMap], id: u32) -> Option<u32> {
    map.iter().find_map(|m| m.to_host(id))
}

/// Checks one map (`flag` names it in errors): 1 to [`IdMap::MAX_RANGES`] ranges, each
/// valid, none overlapping another inside or on the host, and container id 0 mapped.
pub fn check_map(flag: &str, map: &[IdMap]) -> Result<()> {
    if map.is_empty() || map.len() > IdMap::MAX_RANGES {
        return Err(invalid(format!(
            "{flag}: {} ranges; a map has 1 to {}",
            map.len(),
            IdMap::MAX_RANGES
        )));
    }
    for m in map {
        m.check()
            .map_err(|why| invalid(format!("{flag} {m}: {why}")))?;
    }
    let overlap = |a: u32, b: u32, size_a: u32, size_b: u32| {
        u64::from(a) < u64::from(b) + u64::from(size_b)
            && u64::from(b) < u64::from(a) + u64::from(size_a)
    };
    for (i, a) in map.iter().enumerate() {
        for b in &map[i + 1..] {
            if overlap(a.container_id, b.container_id, a.size, b.size) {
                return Err(invalid(format!(
                    "{flag} {a} and {b} overlap inside the container"
                )));
            }
            if overlap(a.host_id, b.host_id, a.size, b.size) {
                return Err(invalid(format!("{flag} {a} and {b} overlap on the host")));
            }
        }
    }
    if to_host(map, 0).is_none() {
        return Err(invalid(format!(
            "{flag} does not map container id 0: runc needs the container's root mapped \
             (e.g. 0:100000:65536)"
        )));
    }
    Ok(())
}

/// Gives `spec` the user namespace `ns`: the namespace, the maps, `/sys` bound from the
/// host when the network namespace is the host's, and `gid=5` off `/dev/pts` when gid 5
/// is not mapped. The process's user (resolved inside the container) must be mapped.
pub fn apply(spec: &mut Spec, ns: &UserNs) -> Result<()> {
    if let Some(user) = spec.process().as_ref().map(|p| p.user().clone()) {
        if ns.host_uid(user.uid()).is_none() {
            return Err(invalid(format!(
                "user: uid {} is not mapped by --uidmap",
                user.uid()
            )));
        }
        let gids =
            std::iter::once(user.gid()).chain(user.additional_gids().iter().flatten().copied());
        for gid in gids {
            if ns.host_gid(gid).is_none() {
                return Err(invalid(format!(
                    "user: gid {gid} is not mapped by --gidmap"
                )));
            }
        }
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    let host_network = !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network);
    if !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User)
    {
        let mut user = LinuxNamespace::default();
        user.set_typ(LinuxNamespaceType::User);
        namespaces.push(user);
    }
    linux.set_namespaces(Some(namespaces));
    let oci = |map: &[IdMap]| -> Result<Vec<LinuxIdMapping>> {
        map.iter()
            .map(|m| {
                LinuxIdMappingBuilder::default()
                    .container_id(m.container_id)
                    .host_id(m.host_id)
                    .size(m.size)
                    .build()
                    .map_err(|e| Error::Internal(format!("id map {m}: {e}")))
            })
            .collect()
    };
    linux.set_uid_mappings(Some(oci(&ns.uids)?));
    linux.set_gid_mappings(Some(oci(&ns.gids)?));
    spec.set_linux(Some(linux));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in &mut mounts {
        if host_network
            && m.destination() == &PathBuf::from("/sys")
            && m.typ().as_deref() == Some("sysfs")
        {
            *m = sys_bind();
        }
        if m.typ().as_deref() == Some("devpts") && ns.host_gid(5).is_none() {
            if let Some(opts) = m.options().clone() {
                m.set_options(Some(opts.into_iter().filter(|o| o != "gid=5").collect()));
            }
        }
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// The host's `/sys`, bound read-only (a user namespace without a network namespace of
/// its own cannot mount a sysfs).
fn sys_bind() -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from("/sys"));
    m.set_typ(Some("none".to_string()));
    m.set_source(Some(PathBuf::from("/sys")));
    m.set_options(Some(
        ["rbind", "nosuid", "noexec", "nodev", "ro"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    ));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::User;

    fn map(c: u32, h: u32, n: u32) -> IdMap {
        IdMap {
            container_id: c,
            host_id: h,
            size: n,
        }
    }

    fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("want InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn id_maps_parse_and_bad_ones_say_why() {
        assert_eq!(IdMap::parse("0:100000:65536"), Ok(map(0, 100000, 65536)));
        assert_eq!(IdMap::parse(" 1:2:3 "), Ok(map(1, 2, 3)));
        assert_eq!(map(0, 100000, 65536).to_string(), "0:100000:65536");
        for (bad, why) in [
            ("0:100000", "want CONTAINER_ID:HOST_ID:SIZE"),
            ("0:100000:65536:1", "want CONTAINER_ID:HOST_ID:SIZE"),
            ("a:100000:65536", "container id \"a\" is not a number"),
            ("0:-1:65536", "host id \"-1\" is not a number"),
            ("0:100000:", "size \"\" is not a number"),
            ("0:100000:0", "size 0"),
            ("0:4294967295:1", "host ids 4294967295 + 1 pass"),
            ("4294967000:0:1000", "container ids 4294967000 + 1000 pass"),
        ] {
            let e = IdMap::parse(bad).unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
        assert_eq!(IdMap::parse("0:4294967294:1"), Ok(map(0, 4294967294, 1)));
        let m = map(10, 1000, 5);
        assert_eq!(
            (m.to_host(9), m.to_host(10), m.to_host(14), m.to_host(15)),
            (None, Some(1000), Some(1004), None)
        );
        assert_eq!(
            (m.to_container(1004), m.to_container(1005)),
            (Some(14), None)
        );
    }

    #[test]
    fn maps_one_alone_maps_both_and_bad_maps_name_the_flag() {
        assert_eq!(UserNs::from_maps(&[], &[]).unwrap(), None);
        let u = [map(0, 100000, 65536)];
        let g = [map(0, 200000, 1000)];
        let both = UserNs::from_maps(&u, &[]).unwrap().unwrap();
        assert_eq!(
            (both.uids.clone(), both.gids.clone()),
            (u.to_vec(), u.to_vec())
        );
        let both = UserNs::from_maps(&[], &g).unwrap().unwrap();
        assert_eq!(
            (both.uids.clone(), both.gids.clone()),
            (g.to_vec(), g.to_vec())
        );
        let ns = UserNs::from_maps(&u, &g).unwrap().unwrap();
        assert_eq!(
            (ns.host_uid(0), ns.host_gid(999), ns.host_gid(1000)),
            (Some(100000), Some(200999), None)
        );
        assert_eq!(ns.key(), "0:100000:65536/0:200000:1000");
        let two = [map(0, 100000, 1000), map(1000, 300000, 10)];
        assert_eq!(
            UserNs::from_maps(&two, &[]).unwrap().unwrap().key(),
            "0:100000:1000,1000:300000:10/0:100000:1000,1000:300000:10"
        );

        let e = err(UserNs::from_maps(
            &[map(0, 100000, 10), map(5, 200000, 10)],
            &g,
        ));
        assert!(
            e.contains("--uidmap") && e.contains("overlap inside"),
            "{e}"
        );
        let e = err(UserNs::from_maps(
            &u,
            &[map(0, 100000, 10), map(100, 100005, 10)],
        ));
        assert!(
            e.contains("--gidmap") && e.contains("overlap on the host"),
            "{e}"
        );
        let e = err(UserNs::from_maps(&[map(1, 100000, 10)], &g));
        assert!(e.contains("--uidmap does not map container id 0"), "{e}");
        let e = err(UserNs::from_maps(&u, &[map(0, 100000, 0)]));
        assert!(e.contains("--gidmap 0:100000:0: size 0"), "{e}");
        let many = vec![map(0, 100000, 1); IdMap::MAX_RANGES + 1];
        assert!(err(UserNs::from_maps(&many, &[])).contains("341 ranges"));
    }

    fn spec_with_user(uid: u32, gid: u32, extra: Option<Vec<u32>>) -> Spec {
        let mut spec = crate::bundle::default_spec();
        let mut process = spec.process().clone().unwrap();
        let mut user = User::default();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_additional_gids(extra);
        process.set_user(user);
        spec.set_process(Some(process));
        spec
    }

    fn mount<'a>(spec: &'a Spec, dst: &str) -> &'a Mount {
        spec.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == &PathBuf::from(dst))
            .unwrap()
    }

    #[test]
    fn the_spec_gets_the_namespace_and_the_maps() {
        let ns = UserNs::from_maps(&[map(0, 100000, 65536)], &[])
            .unwrap()
            .unwrap();
        let mut spec = spec_with_user(1000, 1000, Some(vec![4]));
        apply(&mut spec, &ns).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let types: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert_eq!(
            types
                .iter()
                .filter(|t| **t == LinuxNamespaceType::User)
                .count(),
            1
        );
        assert!(types.contains(&LinuxNamespaceType::Network));
        for maps in [linux.uid_mappings(), linux.gid_mappings()] {
            let m = &maps.as_ref().unwrap()[..];
            assert_eq!(m.len(), 1);
            assert_eq!(
                (m[0].container_id(), m[0].host_id(), m[0].size()),
                (0, 100000, 65536)
            );
        }
        // Its own network namespace: sysfs as it is, and gid 5 is mapped.
        assert_eq!(mount(&spec, "/sys").typ().as_deref(), Some("sysfs"));
        assert!(mount(&spec, "/dev/pts")
            .options()
            .as_ref()
            .unwrap()
            .contains(&"gid=5".to_string()));
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["linux"]["uidMappings"][0]["hostID"], 100000);
        assert_eq!(json["linux"]["gidMappings"][0]["containerID"], 0);
    }

    #[test]
    fn host_network_binds_sys_and_an_unmapped_gid_5_or_user_is_handled() {
        let ns = UserNs::from_maps(&[map(0, 100000, 1)], &[])
            .unwrap()
            .unwrap();
        let mut spec = spec_with_user(0, 0, None);
        let mut linux = spec.linux().clone().unwrap();
        let mut nss = linux.namespaces().clone().unwrap();
        nss.retain(|n| n.typ() != LinuxNamespaceType::Network);
        linux.set_namespaces(Some(nss));
        spec.set_linux(Some(linux));
        apply(&mut spec, &ns).unwrap();
        let sys = mount(&spec, "/sys");
        assert_eq!(sys.source().as_ref(), Some(&PathBuf::from("/sys")));
        assert_eq!(
            sys.options().as_ref().unwrap(),
            &["rbind", "nosuid", "noexec", "nodev", "ro"]
        );
        assert!(!mount(&spec, "/dev/pts")
            .options()
            .as_ref()
            .unwrap()
            .contains(&"gid=5".to_string()));

        let mut spec = spec_with_user(1000, 0, None);
        assert!(err(apply(&mut spec, &ns)).contains("uid 1000 is not mapped by --uidmap"));
        let mut spec = spec_with_user(0, 0, Some(vec![7]));
        assert!(err(apply(&mut spec, &ns)).contains("gid 7 is not mapped by --gidmap"));
    }
}
