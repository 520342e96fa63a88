#!/usr/bin/env python3
"""Builds OCI image layouts for warmbox's tests and benchmark (no network).

  make_layout.py OUT --tag T [--layer DIR]... [--raw-layer TARFILE]...
                 [--config JSON] [--compress gzip|zstd|none]

Each --layer DIR becomes one layer, bottom first: its tree is tarred as is
(owners set to 0 unless a file's name says otherwise; files named .wh.X are
OCI whiteouts). --raw-layer adds a prepared tar (hostile tests). OUT is a
fresh OCI layout (oci-layout, index.json, blobs/sha256/).
"""
import argparse, gzip, hashlib, io, json, os, subprocess, sys, tarfile


def add_blob(out, data, media_type):
    d = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(out, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + d, "size": len(data)}


def tar_dir(path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, path)
                ti = t.gettarinfo(full, arcname=rel)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                if name.startswith("owned-1000"):
                    ti.uid = ti.gid = 1000
                if ti.isreg():
                    with open(full, "rb") as f:
                        t.addfile(ti, f)
                else:
                    t.addfile(ti)
    return buf.getvalue()


def compress(data, how):
    if how == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
    if how == "zstd":
        z = subprocess.run(["zstd", "-q", "-1", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout
        return z, "application/vnd.oci.image.layer.v1.tar+zstd"
    return data, "application/vnd.oci.image.layer.v1.tar"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--tag", default="latest")
    p.add_argument("--layer", action="append", default=[])
    p.add_argument("--raw-layer", action="append", default=[])
    p.add_argument("--config", default="{}")
    p.add_argument("--compress", default="gzip")
    p.add_argument("--multi-arch", action="store_true",
                   help="tag an image index: linux/arm64 (a config that says so) and linux/amd64")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    layers, diff_ids = [], []
    raws = [tar_dir(d) for d in a.layer]
    for r in a.raw_layer:
        with open(r, "rb") as f:
            raws.append(f.read())
    for raw in raws:
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        data, mt = compress(raw, a.compress)
        layers.append(add_blob(a.out, data, mt))
    config = {"architecture": "amd64", "os": "linux", "config": json.loads(a.config),
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdesc = add_blob(a.out, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cdesc, "layers": layers}
    mdesc = add_blob(a.out, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    if a.multi_arch:
        # Its Cmd differs, so a test can tell which one was picked.
        arm_config = dict(config, architecture="arm64", config={"Cmd": ["echo", "wrong-platform"]})
        arm_cdesc = add_blob(a.out, json.dumps(arm_config).encode(), "application/vnd.oci.image.config.v1+json")
        arm = add_blob(a.out, json.dumps(dict(manifest, config=arm_cdesc)).encode(),
                       "application/vnd.oci.image.manifest.v1+json")
        arm["platform"] = {"os": "linux", "architecture": "arm64", "variant": "v8"}
        mdesc["platform"] = {"os": "linux", "architecture": "amd64"}
        inner = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [arm, mdesc]}
        mdesc = add_blob(a.out, json.dumps(inner).encode(), "application/vnd.oci.image.index.v1+json")
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": a.tag}
    index_path = os.path.join(a.out, "index.json")
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != a.tag]
    index["manifests"].append(mdesc)
    with open(index_path, "w") as f:
        json.dump(index, f)
    with open(os.path.join(a.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(mdesc["digest"])


if __name__ == "__main__":
    main()
