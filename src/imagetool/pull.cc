// warmbox-image pull: registry -> blobs -> layers -> index entry.
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "base/fs.h"
#include "base/strings.h"
#include "imagetool/blob_store.h"
#include "imagetool/ops.h"
#include "imagetool/registry.h"
#include "oci/manifest.h"
#include "oci/reference.h"

namespace wb::imagetool {
namespace {

constexpr uint64_t kMaxConfig = 16u << 20;

// $WARMBOX_INSECURE_REGISTRIES: comma-separated registries allowed over
// plain HTTP (so the daemon's pulls can reach them too).
bool InsecureFromEnv(const std::string& registry) {
  const char* env = std::getenv("WARMBOX_INSECURE_REGISTRIES");
  if (!env) return false;
  for (const auto& r : Split(env, ',')) {
    if (Trim(r) == registry) return true;
  }
  return false;
}

oci::Descriptor DescriptorOf(const FetchedManifest& m) {
  oci::Descriptor d;
  d.digest = m.digest;
  d.size = m.body.size();
  return d;
}

// Runs EnsureLayer for the layers it is given, in order, on a thread of its
// own; stops at the first error.
class LayerUnpacker {
 public:
  LayerUnpacker(ImageStore& store, UnpackLimits limits)
      : store_(store), budget_(std::move(limits)), thread_([this] { Loop(); }) {}
  ~LayerUnpacker() { (void)Finish(); }
  void Add(const oci::Descriptor& d) {
    std::lock_guard<std::mutex> l(mu_);
    queue_.push_back(d);
    cv_.notify_one();
  }
  bool failed() {
    std::lock_guard<std::mutex> l(mu_);
    return error_.has_value();
  }
  // Waits for the queued layers; the first error, if any.
  Result<void> Finish() {
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
    if (error_) return *error_;
    return Ok();
  }

 private:
  void Loop() {
    for (;;) {
      oci::Descriptor d;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return !queue_.empty() || done_; });
        if (queue_.empty() || error_) return;
        d = queue_.front();
        queue_.pop_front();
      }
      auto r = EnsureLayer(store_, d, budget_);
      if (!r.ok()) {
        std::lock_guard<std::mutex> l(mu_);
        error_ = std::move(r).error();
      }
    }
  }

  ImageStore& store_;
  UnpackBudget budget_;  // used by the unpacker thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<oci::Descriptor> queue_;
  bool done_ = false;
  std::optional<Error> error_;
  std::thread thread_;  // last: starts once the rest exists
};

}  // namespace

Result<Image> Pull(ImageStore& store, const std::string& text, const PullOptions& o, Progress& p) {
  oci::Reference ref = WB_TRY(oci::ParseReference(text));
  WB_RETURN_IF_ERROR(store.PrepareOciDirs());
  // Shared: prune (exclusive) waits until we are done with what we wrote.
  UniqueFd store_lock = WB_TRY(LockPath(store.LocksDir() + "/store.lock", false));
  RegistryOptions ro;
  ro.insecure = o.insecure || InsecureFromEnv(ref.registry);
  ro.credentials = WB_TRY(LoadCredentials(ref.registry));
  Registry reg(ref, ro);

  FetchedManifest top = WB_TRY(reg.GetManifest(ref.ManifestRef()));
  Image img;
  img.name = ref.Canonical();
  img.source = "registry " + ref.Canonical();
  img.digest = top.digest;
  std::vector<std::pair<oci::Descriptor, std::string>> small;
  FetchedManifest man = top;
  if (WB_TRY(oci::ClassifyManifest(top.content_type, top.body)) == oci::ManifestKind::kIndex) {
    auto entries = WB_TRY(oci::ParseIndex(top.body));
    oci::Descriptor d = WB_TRY(oci::SelectPlatform(entries, o.os, o.arch));
    man = WB_TRY(reg.GetManifest(d.digest));
    if (WB_TRY(oci::ClassifyManifest(man.content_type, man.body)) != oci::ManifestKind::kManifest) {
      return Fail("pull", text, "the platform entry of the index is not an image manifest");
    }
    small.emplace_back(DescriptorOf(top), top.body);
  }
  small.emplace_back(DescriptorOf(man), man.body);
  oci::Manifest m = WB_TRY(oci::ParseManifest(man.body));
  // The config goes through the store like a layer: fetched once however
  // many pulls want it, verified, then read back.
  if (m.config.size > kMaxConfig)
    return Fail("pull", m.config.digest, "image config larger than 16 MiB");
  (void)WB_TRY(EnsureBlob(store, m.config, [&](const std::string& tmp) {
    return reg.DownloadBlob(m.config, tmp, nullptr);
  }));
  std::string config = WB_TRY(ReadFile(store.BlobPath(m.config.digest)));
  oci::RuntimeConfig rc = WB_TRY(oci::ParseImageConfig(config));
  img.blobs.push_back(m.config.digest);
  for (const auto& [d, bytes] : small) {
    WB_RETURN_IF_ERROR(EnsureBlobBytes(store, d, bytes));
    img.blobs.push_back(d.digest);
  }
  // Layer i unpacks on a worker while layer i+1 downloads. One unpack at a
  // time: unpacking works relative to the cwd (libarchive), which is the
  // process's; the downloads use absolute paths only.
  LayerUnpacker unpacker(store, WB_TRY(UnpackLimitsFromEnv()));
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const auto& l = m.layers[i];
    std::string label = "layer " + std::to_string(i + 1) + "/" + std::to_string(m.layers.size()) +
                        " " + l.digest.substr(7, 12);
    if (unpacker.failed()) break;  // its error is reported below
    if (!PathExists(store.LayerDir(l.digest))) {
      auto had = EnsureBlob(store, l, [&](const std::string& tmp) {
        return reg.DownloadBlob(
            l, tmp, [&](uint64_t done, uint64_t total) { p.Update(label, done, total); });
      });
      if (!had.ok()) {
        (void)unpacker.Finish();
        return std::move(had).error();
      }
      p.Update(label, l.size, l.size);
      unpacker.Add(l);
      p.Done(label, *had ? "present, unpacking" : "downloaded, unpacking");
    } else {
      p.Done(label, "already present");
    }
    img.layer_digests.push_back(l.digest);
    img.blobs.push_back(l.digest);
    img.size += l.size;
  }
  WB_RETURN_IF_ERROR(unpacker.Finish());
  img.config.env = rc.env;
  img.config.cmd = rc.cmd;
  img.config.entrypoint = rc.entrypoint;
  img.config.working_dir = rc.working_dir;
  img.config.user = rc.user;
  img.config.labels = rc.labels;
  return store.CommitOci(img);
}

}  // namespace wb::imagetool
