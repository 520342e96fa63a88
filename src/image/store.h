// The image store.
//
//   STATE/images/<escaped name>/image.json   metadata (name, uid base, layers, config)
//   STATE/images/<escaped name>/rootfs/      the tree of a built-in or import-dir image
//   STATE/blobs/sha256/<hex>                 OCI blobs (manifests, configs, layers),
//                                            content-addressed, verified before rename
//   STATE/layers/<uid base>/<hex>/           a layer blob unpacked (shared by images)
//   STATE/locks/                             flock files: store (shared by pulls,
//                                            exclusive for prune), one per blob and layer
//   STATE/tmp/                               work in progress (renamed into place)
//   STATE/trash/                             removed image trees and layer dirs that a
//                                            sandbox still mounts (deleted once none does)
//
// The images index is keyed by name: import-dir names as given, pulled and
// imported OCI images by their canonical reference
// (docker.io/library/python:3.12-slim); lookups accept the short form.
//
// Image files are owned by the sandbox's uid range on disk (uid u inside is
// uid_base+u on the host), so the overlay that a sandbox mounts in its user
// namespace shows them with their real owners, and root in the sandbox owns
// nothing on the host. An OCI image's "layers" are blob digests, bottom
// first; the driver mounts their dirs as the overlay's lower layers.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "proto/agent_proto.h"

namespace wb {

inline constexpr const char* kDefaultImage = "busybox";

// Defaults of every run in the image (the OCI config's Env, Cmd,
// Entrypoint, WorkingDir, User). Docker's rules: the run's env is appended
// (and wins), its cwd/user replace; argv is Entrypoint + (the run's command,
// or Cmd when the run gives none).
struct ImageConfig {
  std::vector<std::string> env;
  std::vector<std::string> cmd;
  std::vector<std::string> entrypoint;
  std::string working_dir;
  std::string user;
  // The config's Labels (org.warmbox.services: daemon/services.h).
  std::map<std::string, std::string> labels;

  // req with these defaults applied (the rules above). One place for every driver.
  proto::ExecRequest Apply(proto::ExecRequest req) const;
  // {"Env":[..],"Cmd":[..],"Entrypoint":[..],"WorkingDir":"","User":"","Labels":{..}}: image.json's
  // and `image inspect`'s form.
  nlohmann::json ToJson() const;
};

struct Image {
  std::string name;
  std::vector<std::string> lower_dirs;  // absolute, top layer first
  uint32_t uid_base = 0;
  std::string source;
  std::string created;  // RFC 3339
  ImageConfig config;
  // OCI images only:
  std::string digest;                      // manifest digest
  std::vector<std::string> layer_digests;  // bottom first
  std::vector<std::string> blobs;          // every blob it references (manifest, config, layers)
  uint64_t size = 0;                       // compressed layer bytes
};

struct PruneReport {
  size_t blobs = 0, layers = 0, tmp = 0;
  uint64_t bytes = 0;  // blob bytes freed
  size_t in_use = 0;   // removed dirs kept in trash/ because a sandbox mounts them
};

// Files in use are never deleted. A sandbox records the image dirs it mounts
// (their dev:ino) in STATE/sandboxes/<id>/lowers before it mounts them;
// `image rm` and `image prune` first rename what they remove into trash/,
// then delete only the trash entries that no sandbox dir names. The rest
// goes at a later rm, prune or gc, once the sandboxes using it are gone.
// not_found when an image dir is gone (removed while the sandbox was made).
[[nodiscard]] Result<void> RecordLowerDirs(const std::string& sandbox_dir, const Image& img);

// Host users other than root must not reach what sandboxes see: the
// files of an image are set-uid to sandbox uids and its /tmp is
// world-writable. A dir holding image trees (an image's own, layers/<base>)
// is made root:<uid base> 0710: the sandbox range, which mounts them, may
// pass; no other host user may (docs/security.md).
[[nodiscard]] Result<void> CloseToOthers(const std::string& dir, uint32_t uid_base);

class ImageStore {
 public:
  ImageStore(std::string state_dir, uint32_t uid_base)
      : state_dir_(std::move(state_dir)), uid_base_(uid_base) {}

  // The built-in default image is created on first use.
  [[nodiscard]] Result<Image> Get(const std::string& name);
  [[nodiscard]] Result<std::vector<Image>> List();
  // Cheap: the default image always "exists" (it is built on first use).
  bool Exists(const std::string& name) const;
  // Copies DIR into the store (ownership shifted into the sandbox range).
  [[nodiscard]] Result<Image> ImportDir(const std::string& name, const std::string& dir);
  // The stored name name resolves to: itself if stored under it, else its
  // canonical reference ("python:3" -> "docker.io/library/python:3").
  std::string Resolve(const std::string& name) const;
  // Removes an image from the index (its layers stay until Prune). Its own
  // tree (built-in and import-dir images) is deleted now, or kept in trash/
  // while a sandbox mounts it: false then.
  [[nodiscard]] Result<bool> Remove(const std::string& name);
  // Removes blobs and layer dirs no image references, and stale temp files.
  // Waits for pulls and imports in progress (exclusive store lock).
  [[nodiscard]] Result<PruneReport> Prune();
  // Deletes the trash entries no sandbox mounts; the number kept.
  [[nodiscard]] Result<size_t> EmptyTrash();
  // Records an OCI image whose blobs and layer dirs are in place (replacing
  // an image of the same name atomically).
  [[nodiscard]] Result<Image> CommitOci(const Image& img);

  static Result<void> ValidateName(const std::string& name);
  std::string ImagesDir() const { return state_dir_ + "/images"; }
  std::string BlobPath(const std::string& digest) const;  // digest validated by the caller
  std::string LayerDir(const std::string& digest) const;  // for this store's uid base
  std::string LocksDir() const { return state_dir_ + "/locks"; }
  std::string TmpDir() const { return state_dir_ + "/tmp"; }
  std::string TrashDir() const { return state_dir_ + "/trash"; }
  const std::string& state_dir() const { return state_dir_; }
  uint32_t uid_base() const { return uid_base_; }
  // Creates blobs/, layers/<base>/, locks/, tmp/ (searchable by the sandbox range).
  [[nodiscard]] Result<void> PrepareOciDirs();

 private:
  Result<Image> Load(const std::string& dir);
  // Renames path into trash/ (out of every index at once).
  Result<void> Discard(const std::string& path);
  // Moves a finished tmp dir into place (atomic; the first of two racing
  // creators wins and the other's copy is dropped).
  Result<Image> Commit(const std::string& name, const std::string& tmp, const std::string& source);

  std::string state_dir_;
  uint32_t uid_base_;
  std::mutex build_mu_;  // one build of the default image at a time in this process
};

}  // namespace wb
