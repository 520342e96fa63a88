// warmbox-image import: docker-archive tarballs (manifest.json + layer
// tars) and OCI image layouts (oci-layout + index.json + blobs/), each as a
// directory or a tar file.
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/json.h"
#include "base/strings.h"
#include "imagetool/blob_store.h"
#include "imagetool/blob_verify.h"
#include "imagetool/ops.h"
#include "imagetool/sha256.h"
#include "imagetool/unpack.h"
#include "oci/layer_plan.h"
#include "oci/manifest.h"
#include "oci/reference.h"

namespace wb::imagetool {
namespace {

constexpr uint64_t kMaxSmall = 16u << 20;

Result<std::string> ReadSmall(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Errno("stat", path);
  if (!S_ISREG(st.st_mode)) return Fail("import", path, "not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxSmall)
    return Fail("import", path, "larger than 16 MiB");
  return ReadFile(path);
}

// A member path of the archive, inside root. `docker save` links layers it
// holds twice (<id>/layer.tar -> ../<other>/layer.tar): symlinks are
// followed, but the file they reach must be inside root.
Result<std::string> Member(const std::string& root, const std::string& rel) {
  std::string clean = WB_TRY(oci::CleanMemberPath(rel));
  if (clean.empty()) return Fail("import", rel, "empty member path");
  char real_root[PATH_MAX], real[PATH_MAX];
  if (!::realpath(root.c_str(), real_root)) return Errno("realpath", root);
  if (!::realpath((root + "/" + clean).c_str(), real)) return Errno("realpath", root + "/" + clean);
  if (!StartsWith(real, std::string(real_root) + "/")) {
    return Fail("import", rel, "resolves outside the archive (" + std::string(real) + ")");
  }
  return std::string(real);
}

Result<std::string> OciBlobPath(const std::string& root, const std::string& digest) {
  WB_RETURN_IF_ERROR(oci::ValidateDigest(digest));
  return root + "/blobs/sha256/" + oci::DigestHex(digest);
}

Result<std::string> ReadOciBlob(const std::string& root, const oci::Descriptor& d) {
  if (d.size > kMaxSmall) return Fail("import", d.digest, "larger than 16 MiB");
  std::string bytes = WB_TRY(ReadSmall(WB_TRY(OciBlobPath(root, d.digest))));
  WB_RETURN_IF_ERROR(VerifyBlob(d, bytes));
  return bytes;
}

struct Parsed {
  std::string name;  // from the archive, may be empty
  std::vector<std::pair<oci::Descriptor, std::string>> small;
  oci::RuntimeConfig config;
  std::vector<std::pair<oci::Descriptor, std::string>> layers;  // descriptor, source file
  std::string digest;
};

Result<Parsed> ParseOciLayout(const std::string& root, const std::string& want) {
  Parsed out;
  std::string index_text = WB_TRY(ReadSmall(root + "/index.json"));
  auto entries = WB_TRY(oci::ParseIndex(index_text));
  if (entries.empty()) return Fail("import", root + "/index.json", "no manifests");
  const oci::Descriptor* pick = nullptr;
  if (entries.size() == 1) {
    pick = &entries[0];
  } else {
    std::string names;
    for (const auto& e : entries) {
      auto ref = oci::ParseReference(want);
      if (!want.empty() && (e.ref_name == want || (ref.ok() && e.ref_name == ref->tag))) pick = &e;
      names += (names.empty() ? "" : ", ") + (e.ref_name.empty() ? e.digest : e.ref_name);
    }
    if (!pick)
      return Fail("import", root,
                  "the layout holds several images (" + names + "); choose one with --name");
  }
  out.name = pick->ref_name;
  oci::Descriptor md = *pick;
  std::string body = WB_TRY(ReadOciBlob(root, md));
  out.digest = md.digest;
  if (WB_TRY(oci::ClassifyManifest(md.media_type, body)) == oci::ManifestKind::kIndex) {
    out.small.emplace_back(md, body);
    md = WB_TRY(oci::SelectPlatform(WB_TRY(oci::ParseIndex(body)), "linux", "amd64"));
    body = WB_TRY(ReadOciBlob(root, md));
  }
  out.small.emplace_back(md, body);
  oci::Manifest m = WB_TRY(oci::ParseManifest(body));
  std::string config = WB_TRY(ReadOciBlob(root, m.config));
  out.config = WB_TRY(oci::ParseImageConfig(config));
  out.small.emplace_back(m.config, config);
  for (const auto& l : m.layers) out.layers.emplace_back(l, WB_TRY(OciBlobPath(root, l.digest)));
  return out;
}

Result<oci::Descriptor> DescribeFile(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Errno("stat", path);
  if (!S_ISREG(st.st_mode)) return Fail("import", path, "not a regular file");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return Errno("open", path);
  Sha256 h;
  std::string buf(1 << 20, '\0');
  oci::Descriptor d;
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read", path);
    }
    if (n == 0) break;
    h.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    d.size += static_cast<uint64_t>(n);
  }
  d.digest = h.Digest();
  return d;
}

Result<Parsed> ParseDockerArchive(const std::string& root, const std::string& want) {
  Parsed out;
  std::string text = WB_TRY(ReadSmall(root + "/manifest.json"));
  auto parsed = ParseJsonBounded(text, root + "/manifest.json");
  if (!parsed.ok()) return parsed.error();
  auto& j = *parsed;
  if (!j.is_array() || j.empty()) {
    return Fail("import", root + "/manifest.json", "expected a non-empty JSON array");
  }
  const nlohmann::json* pick = j.size() == 1 ? &j[0] : nullptr;
  if (!pick) {
    auto ref = oci::ParseReference(want);
    for (const auto& e : j) {
      if (!e.is_object() || !e.contains("RepoTags") || !e["RepoTags"].is_array()) continue;
      for (const auto& t : e["RepoTags"]) {
        auto tr = t.is_string() ? oci::ParseReference(t.get<std::string>())
                                : Result<oci::Reference>(Fail("", "", ""));
        if (ref.ok() && tr.ok() && tr->Canonical() == ref->Canonical()) pick = &e;
      }
    }
    if (!pick)
      return Fail("import", root,
                  "the archive holds several images; choose one with --name (one of its tags)");
  }
  const auto& e = *pick;
  if (!e.is_object() || !e.contains("Config") || !e["Config"].is_string() ||
      !e.contains("Layers") || !e["Layers"].is_array()) {
    return Fail("import", root + "/manifest.json", "entry without Config and Layers");
  }
  if (e.contains("RepoTags") && e["RepoTags"].is_array() && !e["RepoTags"].empty() &&
      e["RepoTags"][0].is_string()) {
    out.name = e["RepoTags"][0].get<std::string>();
  }
  std::string config = WB_TRY(ReadSmall(WB_TRY(Member(root, e["Config"].get<std::string>()))));
  oci::Descriptor cd;
  cd.digest = Sha256Of(config);
  cd.size = config.size();
  out.config = WB_TRY(oci::ParseImageConfig(config));
  out.small.emplace_back(cd, config);
  out.digest = cd.digest;  // a docker archive has no manifest: the image is named by its config
  for (const auto& l : e["Layers"]) {
    if (!l.is_string())
      return Fail("import", root + "/manifest.json", "layer path is not a string");
    std::string file = WB_TRY(Member(root, l.get<std::string>()));
    out.layers.emplace_back(WB_TRY(DescribeFile(file)), file);
  }
  return out;
}

// The config's rootfs.diff_ids name each layer's uncompressed content. A
// docker-archive has no manifest: they are all that binds its layer tars to
// the image (which is named by its config's digest), so a swapped or
// tampered layer.tar is caught here, before anything is written.
Result<void> CheckDiffIds(const Parsed& parsed) {
  const auto& want = parsed.config.diff_ids;
  if (want.size() != parsed.layers.size()) {
    return Fail(ErrorCode::kInvalidArgument, "import", "rootfs.diff_ids",
                "the image config names " + std::to_string(want.size()) +
                    " layers, the archive holds " + std::to_string(parsed.layers.size()));
  }
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& [d, src] = parsed.layers[i];
    if (d.digest == want[i]) continue;  // an uncompressed layer: its digest is its diff_id
    std::string got = WB_TRY(UncompressedDigest(src, &d));
    if (got != want[i]) {
      return Fail(ErrorCode::kInvalidArgument, "import",
                  "layer " + std::to_string(i + 1) + " (" + d.digest + ")",
                  "diff_id mismatch: its uncompressed content is " + got +
                      ", the image config's rootfs.diff_ids says " + want[i]);
    }
  }
  return Ok();
}

}  // namespace

Result<Image> Import(ImageStore& store, const std::string& file, const std::string& name,
                     Progress& p, const ImportOptions& o) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) return Errno("import", file);
  if (!name.empty()) WB_RETURN_IF_ERROR(oci::ParseReference(name));
  if (o.local_name) {
    if (name.empty()) return Fail("import", file, "a local name needs --name");
    WB_RETURN_IF_ERROR(ImageStore::ValidateName(name));
  }
  const UnpackLimits limits = WB_TRY(UnpackLimitsFromEnv());
  WB_RETURN_IF_ERROR(store.PrepareOciDirs());
  UniqueFd store_lock = WB_TRY(LockPath(store.LocksDir() + "/store.lock", false));
  std::string root = file, extracted;
  if (!S_ISDIR(st.st_mode)) {
    // A tar of either format: unpacked (path-checked) into our temp dir.
    extracted = store.TmpDir() + "/import-" + WB_TRY(RandomHex(6));
    if (::mkdir(extracted.c_str(), 0700) != 0) return Errno("mkdir", extracted);
    auto x = ExtractArchive(file, extracted, limits.image);
    if (!x.ok()) {
      (void)RemoveTree(extracted);
      return x.error().Wrap("import " + file);
    }
    root = extracted;
  }
  auto run = [&]() -> Result<Image> {
    UnpackBudget budget(limits);
    Parsed parsed;
    std::string kind;
    if (PathExists(root + "/oci-layout")) {
      parsed = WB_TRY(ParseOciLayout(root, name));
      kind = "oci-archive";
    } else if (PathExists(root + "/manifest.json")) {
      parsed = WB_TRY(ParseDockerArchive(root, name));
      kind = "docker-archive";
    } else {
      return Fail(
          "import", file,
          "neither a docker-archive (manifest.json) nor an OCI layout (oci-layout, index.json)");
    }
    std::string chosen = name.empty() ? parsed.name : name;
    auto ref = oci::ParseReference(chosen);
    if (chosen.empty() || !ref.ok() ||
        (name.empty() && chosen.find_first_of(":/") == std::string::npos)) {
      return Fail("import", file,
                  "the archive names no image" +
                      (chosen.empty() ? std::string() : " (only '" + chosen + "')") +
                      ": give one with --name REF");
    }
    WB_RETURN_IF_ERROR(CheckDiffIds(parsed));
    Image img;
    img.name = o.local_name ? name : ref->Canonical();
    img.source = o.source.empty() ? kind + " " + file : o.source;
    img.digest = parsed.digest;
    for (const auto& [d, bytes] : parsed.small) {
      WB_RETURN_IF_ERROR(EnsureBlobBytes(store, d, bytes));
      img.blobs.push_back(d.digest);
    }
    for (size_t i = 0; i < parsed.layers.size(); ++i) {
      const auto& [d, src] = parsed.layers[i];
      std::string label = "layer " + std::to_string(i + 1) + "/" +
                          std::to_string(parsed.layers.size()) + " " + d.digest.substr(7, 12);
      p.Update(label, 0, d.size);
      (void)WB_TRY(
          EnsureBlob(store, d, [&](const std::string& tmp) { return CopyVerified(src, d, tmp); }));
      p.Update(label, d.size, d.size);
      WB_RETURN_IF_ERROR(EnsureLayer(store, d, budget));
      p.Done(label, "imported");
      img.layer_digests.push_back(d.digest);
      img.blobs.push_back(d.digest);
      img.size += d.size;
    }
    img.config.env = parsed.config.env;
    img.config.cmd = parsed.config.cmd;
    img.config.entrypoint = parsed.config.entrypoint;
    img.config.working_dir = parsed.config.working_dir;
    img.config.user = parsed.config.user;
    img.config.labels = parsed.config.labels;
    return store.CommitOci(img);
  };
  auto r = run();
  if (!extracted.empty()) (void)RemoveTree(extracted);
  return r;
}

}  // namespace wb::imagetool
