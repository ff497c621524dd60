//! Section 5 of the image benchmark: a container from an image, run to completion.
//!
//! `corralctl run --rm IMAGE ID -- /bin/true` against `ctr run --rm IMAGE ID /bin/true`
//! (the same image from the same private registry) and `runc run` of the same rootfs as a
//! bundle, interleaved; then the unpack of the 50 MB image, corral against containerd.

use super::*;

/// The busybox image in the registry (one gzip layer).
const BUSYBOX: &str = "bench/busybox:1";
/// The unpack image: busybox and three incompressible layers.
const UNPACK: &str = "bench/unpack:1";

impl Bench {
    pub(super) fn corralctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CORRALCTL);
        c.arg("--socket").arg(&self.socket).args(args);
        c
    }

    fn next_id(&mut self, what: &str) -> String {
        self.seq += 1;
        format!("{what}-{}-{}", std::process::id(), self.seq)
    }
}

/// `corralctl run --rm` of `/bin/true`.
fn corral_run(b: &mut Bench, reference: &str) -> R<Duration> {
    let id = b.next_id("crun");
    let (took, out) = run(&mut b.corralctl(&["run", "--rm", reference, &id, "--", "/bin/true"]))?;
    if !out.stdout.is_empty() {
        return Err(format!("corral run printed {:?}", out.stdout));
    }
    Ok(took)
}

/// `ctr run --rm` of `/bin/true`.
fn ctr_run(b: &mut Bench, reference: &str) -> R<Duration> {
    let id = b.next_id("ctrrun");
    let (took, _) = run(&mut b.ctr(&["run", "--rm", reference, &id, "/bin/true"]))?;
    Ok(took)
}

/// `runc run` (foreground; runc deletes the container when it exits) of the bundle.
fn runc_run(b: &mut Bench, bundle: &Path, root: &Path) -> R<Duration> {
    let id = b.next_id("runcrun");
    let mut cmd = Command::new(&b.s.runc);
    cmd.arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(&id);
    let (took, _) = run(&mut cmd)?;
    Ok(took)
}

/// Pulls `name` into corral (content only) and into containerd (`ctr image pull`, which
/// unpacks).
fn pull_both(b: &Bench, client: &mut Client, name: &str) -> R<String> {
    let reference = format!("{}/{name}", b.addr());
    corral_pull(b, client, name)?;
    run(&mut b.ctr(&["image", "pull", "--plain-http", &reference]))?;
    Ok(reference)
}

pub(super) fn bench_run(b: &mut Bench, rep: &mut Report) -> R<()> {
    let n = b.s.warm_n;
    progress(format!(
        "5. run --rm of /bin/true from an image: 2 warm-ups + {n} rounds each of corral, ctr, runc"
    ));
    let spec = ImageSpec::busybox();
    build_and_push(b, BUSYBOX, spec, None)?;
    let mut client = b.client()?;
    let reference = pull_both(b, &mut client, BUSYBOX)?;
    // runc's bundle: the same busybox-static as the image's layer, `runc spec` defaults.
    let bundle = b.dir.join("bundle-true");
    corral::bundle::make_busybox(&bundle, &["/bin/true".to_string()])
        .map_err(|e| format!("bundle: {e}"))?;
    let runc_root = b.run_dir.join("runc-root");
    let (mut corral, mut ctr, mut runc) =
        (Samples::default(), Samples::default(), Samples::default());
    for round in 0..n + 2 {
        b.check_stop()?;
        let c = corral_run(b, &reference)?;
        let d = ctr_run(b, &reference)?;
        let r = runc_run(b, &bundle, &runc_root)?;
        if round >= 2 {
            corral.push(c);
            ctr.push(d);
            runc.push(r);
        }
    }
    rep.line("## 5. A container from an image, run to completion");
    rep.line("");
    rep.line(format!(
        "The busybox-static image (one gzip layer) pulled from the private registry into \
         each. Each round, interleaved: `corralctl run --rm IMAGE ID -- /bin/true` (unpacked \
         already: prepares and mounts a writable overlay snapshot, writes the spec from the \
         image config, runs, copies the output, deletes, unmounts and removes the snapshot), \
         `ctr run --rm IMAGE ID /bin/true` (the same through containerd and its shim), and \
         `runc run` of a bundle with the same busybox-static as its rootfs (no snapshot, no \
         client). Every time includes its CLI process. {n} rounds after 2 untimed."
    ));
    rep.line("");
    let rows: [(&str, &Samples); 3] = [
        ("**corral** `corralctl run --rm`", &corral),
        ("`ctr run --rm`", &ctr),
        ("`runc run` (bundle)", &runc),
    ];
    rep.timings("what", &rows, &corral);
    rep.line("");
    let r_runc = corral.median() / runc.median();
    let r_ctr = corral.median() / ctr.median();
    rep.target(
        "`run --rm` from an image, corral / `runc run` of a bundle (median) ≤ 1.1×",
        format!("{r_runc:.2}×"),
        r_runc <= 1.1,
    );
    rep.target(
        "`run --rm` from an image, corral / `ctr run --rm` (median) ≤ 0.4×",
        format!("{r_ctr:.2}×"),
        r_ctr <= 0.4,
    );
    rep.line("");
    bench_unpack(b, rep, &mut client)
}

/// Unpack of the busybox + 30/15/5 MB image: the first run after a pull (content present,
/// no snapshot) less a warm run, for corral; `ctr image pull` with the content present but
/// no snapshot less a warm `ctr image pull`, for containerd.
fn bench_unpack(b: &mut Bench, rep: &mut Report, client: &mut Client) -> R<()> {
    let rounds = b.s.n;
    progress(format!("5b. unpack: {rounds} rounds each"));
    let mut spec = ImageSpec::busybox();
    for (i, m) in b.s.layers_mb.iter().enumerate() {
        spec = spec.layer(
            images::big_layer_seeded(m * 1_000_000, 40 + i as u64),
            Compression::Gzip,
        );
    }
    let pushed = build_and_push(b, UNPACK, spec, None)?;
    let reference = format!("{}/{UNPACK}", b.addr());
    let (mut corral, mut ctr) = (Samples::default(), Samples::default());
    let (mut corral_warm, mut ctr_warm) = (Samples::default(), Samples::default());
    for _ in 0..rounds {
        b.check_stop()?;
        b.corral_make_cold(client)?;
        corral_pull(b, client, UNPACK)?;
        corral.push(corral_run(b, &reference)?);
        corral_warm.push(corral_run(b, &reference)?);
        b.ctr_make_cold()?;
        run(&mut b.ctr(&["content", "fetch", "--plain-http", &reference]))?;
        let (cold, _) = run(&mut b.ctr(&["image", "pull", "--plain-http", &reference]))?;
        let (warm, _) = run(&mut b.ctr(&["image", "pull", "--plain-http", &reference]))?;
        ctr.push(cold);
        ctr_warm.push(warm);
    }
    b.corral_make_cold(client)?;
    b.ctr_make_cold()?;
    let unpack_corral = corral.median() - corral_warm.median();
    let unpack_ctr = ctr.median() - ctr_warm.median();
    let layers = pushed.layers.iter().map(|l| mb(*l)).collect::<Vec<_>>();
    rep.line("### Unpack");
    rep.line("");
    rep.line(format!(
        "The image: busybox and {} incompressible gzip layers ({} compressed), pulled with \
         its content only. corral: the first `corralctl run --rm IMAGE ID -- /bin/true` \
         (which unpacks every layer into a committed snapshot, syncing each) less the next, \
         warm one. containerd: `ctr content fetch`, then `ctr image pull` (content present: \
         it unpacks) less a second, warm `ctr image pull`. {rounds} rounds, the stores \
         emptied before each.",
        layers.len() - 1,
        layers.join(" + ")
    ));
    rep.line("");
    rep.line("| what | corral | containerd | corral / containerd |");
    rep.line("|---|---|---|---|");
    rep.line(format!(
        "| first (unpacking) | {} | {} | {} |",
        ms(corral.median()),
        ms(ctr.median()),
        ratio(corral.median(), ctr.median())
    ));
    rep.line(format!(
        "| warm | {} | {} | {} |",
        ms(corral_warm.median()),
        ms(ctr_warm.median()),
        ratio(corral_warm.median(), ctr_warm.median())
    ));
    rep.line(format!(
        "| **unpack** (first − warm) | {} | {} | {} |",
        ms(unpack_corral),
        ms(unpack_ctr),
        ratio(unpack_corral, unpack_ctr)
    ));
    rep.line("");
    Ok(())
}
