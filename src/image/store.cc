#include "image/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "base/fs.h"
#include "base/strings.h"
#include "image/default_image.h"
#include "image/tree_copy.h"
#include "oci/reference.h"

namespace wb {

proto::ExecRequest ImageConfig::Apply(proto::ExecRequest req) const {
  // The image's config supplies defaults; the request wins.
  std::vector<std::string> merged_env = env;
  merged_env.insert(merged_env.end(), req.env.begin(), req.env.end());
  req.env = std::move(merged_env);
  if (req.cwd.empty()) req.cwd = working_dir;
  if (req.user.empty()) req.user = user;
  // Docker's rule: Entrypoint + (the command given, or the image's Cmd).
  std::vector<std::string> argv = entrypoint;
  const auto& tail = req.argv.empty() ? cmd : req.argv;
  argv.insert(argv.end(), tail.begin(), tail.end());
  req.argv = std::move(argv);
  return req;
}

nlohmann::json ImageConfig::ToJson() const {
  return {
      {"Env", env},   {"Cmd", cmd},      {"Entrypoint", entrypoint}, {"WorkingDir", working_dir},
      {"User", user}, {"Labels", labels}};
}
namespace {

// Names map to single path components: keep [A-Za-z0-9._-], %-escape the rest.
std::string Escape(const std::string& name) {
  std::string out;
  for (unsigned char c : name) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '-') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string NowRfc3339() {
  time_t t = ::time(nullptr);
  tm tm;
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

Result<void> ImageStore::ValidateName(const std::string& name) {
  if (name.empty() || name.size() > 255)
    return Fail("image name", name, "must be 1-255 characters");
  // A name is passed to the image helper as an argument: one that looks like
  // an option ("--help") must never be read as one.
  if (name.front() == '-') return Fail("image name", name, "must not start with '-'");
  for (unsigned char c : name) {
    if (!(std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == '/' || c == ':' ||
          c == '@')) {
      return Fail("image name", name, "may contain only letters, digits and . _ - / : @");
    }
  }
  std::string path = name.substr(0, name.find_first_of(":@"));
  for (const auto& part : Split(path, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return Fail("image name", name, "path components must be non-empty and not . or ..");
    }
  }
  return Ok();
}

Result<Image> ImageStore::Load(const std::string& dir) {
  std::string text = WB_TRY(ReadFile(dir + "/image.json"));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string() ||
      !j.contains("uid_base") || !j["uid_base"].is_number_unsigned()) {
    return Fail("load image", dir + "/image.json", "invalid or incomplete metadata");
  }
  Image img;
  img.name = j["name"].get<std::string>();
  img.uid_base = j["uid_base"].get<uint32_t>();
  img.source = j.value("source", "");
  img.created = j.value("created", "");
  if (j.contains("digest") && j["digest"].is_string()) img.digest = j["digest"];
  if (j.contains("size") && j["size"].is_number_unsigned()) img.size = j["size"].get<uint64_t>();
  auto strings = [](const nlohmann::json& o, const char* key) {
    std::vector<std::string> out;
    if (o.contains(key) && o[key].is_array()) {
      for (const auto& e : o[key]) {
        if (e.is_string()) out.push_back(e.get<std::string>());
      }
    }
    return out;
  };
  // "layers", bottom first: "rootfs" (the image's own tree) or a layer blob
  // digest (a shared dir under layers/).
  std::vector<std::string> layers = strings(j, "layers");
  if (layers.empty()) layers.push_back("rootfs");
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    if (*it == "rootfs") {
      img.lower_dirs.push_back(dir + "/rootfs");
    } else if (oci::ValidateDigest(*it).ok()) {
      img.layer_digests.insert(img.layer_digests.begin(), *it);
      img.lower_dirs.push_back(state_dir_ + "/layers/" + std::to_string(img.uid_base) + "/" +
                               oci::DigestHex(*it));
    } else {
      return Fail("load image", dir + "/image.json", "bad layer '" + *it + "'");
    }
  }
  img.blobs = strings(j, "blobs");
  if (j.contains("config") && j["config"].is_object()) {
    const auto& c = j["config"];
    img.config.env = strings(c, "Env");
    img.config.cmd = strings(c, "Cmd");
    img.config.entrypoint = strings(c, "Entrypoint");
    if (c.contains("WorkingDir") && c["WorkingDir"].is_string())
      img.config.working_dir = c["WorkingDir"];
    if (c.contains("User") && c["User"].is_string()) img.config.user = c["User"];
    if (c.contains("Labels") && c["Labels"].is_object()) {
      for (const auto& [k, v] : c["Labels"].items()) {
        if (v.is_string()) img.config.labels[k] = v.get<std::string>();
      }
    }
  }
  return img;
}

std::string ImageStore::Resolve(const std::string& name) const {
  if (name == kDefaultImage || PathExists(ImagesDir() + "/" + Escape(name) + "/image.json"))
    return name;
  auto ref = oci::ParseReference(name);
  return ref.ok() ? ref->Canonical() : name;
}

bool ImageStore::Exists(const std::string& name) const {
  return name == kDefaultImage ||
         PathExists(ImagesDir() + "/" + Escape(Resolve(name)) + "/image.json");
}

std::string ImageStore::BlobPath(const std::string& digest) const {
  return state_dir_ + "/blobs/sha256/" + oci::DigestHex(digest);
}

std::string ImageStore::LayerDir(const std::string& digest) const {
  return state_dir_ + "/layers/" + std::to_string(uid_base_) + "/" + oci::DigestHex(digest);
}

Result<void> CloseToOthers(const std::string& dir, uint32_t uid_base) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return Errno("stat", dir);
  if (!S_ISDIR(st.st_mode))
    return Fail(ErrorCode::kFailedPrecondition, "store", dir, "not a directory");
  // The owner first, then the mode: never group-searchable by a group that
  // should not pass.
  if ((st.st_uid != 0 || st.st_gid != uid_base) && ::lchown(dir.c_str(), 0, uid_base) != 0) {
    return Errno("chown", dir);
  }
  if ((st.st_mode & 07777) != 0710 && ::chmod(dir.c_str(), 0710) != 0) return Errno("chmod", dir);
  return Ok();
}

Result<void> ImageStore::PrepareOciDirs() {
  // The sandbox's uid range walks layers/<base>/<hex> when its overlay is
  // mounted; other host users may not (CloseToOthers).
  WB_RETURN_IF_ERROR(MkdirAll(state_dir_ + "/blobs/sha256", 0755));
  WB_RETURN_IF_ERROR(MkdirAll(state_dir_ + "/layers", 0711));
  const std::string layers = state_dir_ + "/layers/" + std::to_string(uid_base_);
  WB_RETURN_IF_ERROR(MkdirAll(layers, 0710));
  WB_RETURN_IF_ERROR(CloseToOthers(layers, uid_base_));
  WB_RETURN_IF_ERROR(MkdirAll(LocksDir(), 0700));
  WB_RETURN_IF_ERROR(MkdirAll(TmpDir(), 0700));
  WB_RETURN_IF_ERROR(MkdirAll(ImagesDir(), 0755));
  return Ok();
}

Result<Image> ImageStore::Get(const std::string& input) {
  WB_RETURN_IF_ERROR(ValidateName(input));
  const std::string name = Resolve(input);
  std::string dir = ImagesDir() + "/" + Escape(name);
  if (!PathExists(dir + "/image.json")) {
    if (name != kDefaultImage) {
      return Fail("image", input,
                  "no such image (see 'warmbox image ls'; pull one with 'warmbox image pull "
                  "REF', or import one with 'warmbox image import' or 'import-dir')");
    }
    std::lock_guard<std::mutex> lock(build_mu_);
    if (PathExists(dir + "/image.json")) return Load(dir);  // built while we waited
    WB_RETURN_IF_ERROR(MkdirAll(ImagesDir(), 0755));
    std::string tmp = ImagesDir() + "/.tmp-" + WB_TRY(RandomHex(6));
    auto built = BuildDefaultImage(tmp + "/rootfs", uid_base_);
    if (!built.ok()) {
      (void)RemoveTree(tmp);
      return built.error().Wrap("create default image");
    }
    return Commit(name, tmp, *built);
  }
  Image img = WB_TRY(Load(dir));
  if (img.uid_base != uid_base_) {
    return Fail("image", name,
                "its files are owned by the uid range at " + std::to_string(img.uid_base) +
                    " but sandboxes use " + std::to_string(uid_base_) +
                    "; re-import it or use --userns-base " + std::to_string(img.uid_base));
  }
  // A store written before the dirs were closed is closed as its images are
  // used (root only: it owns them).
  if (::geteuid() == 0) {
    WB_RETURN_IF_ERROR(CloseToOthers(dir, uid_base_));
    if (!img.layer_digests.empty()) {
      WB_RETURN_IF_ERROR(
          CloseToOthers(state_dir_ + "/layers/" + std::to_string(uid_base_), uid_base_));
    }
  }
  return img;
}

Result<Image> ImageStore::Commit(const std::string& name, const std::string& tmp,
                                 const std::string& source) {
  nlohmann::json j = {
      {"name", name},
      {"uid_base", uid_base_},
      {"source", source},
      {"created", NowRfc3339()},
      {"layers", {"rootfs"}},
      {"config", {{"Env", nlohmann::json::array()}, {"WorkingDir", "/"}, {"User", ""}}}};
  auto w = WriteFileAtomic(tmp + "/image.json", j.dump(2) + "\n");
  if (w.ok()) w = CloseToOthers(tmp, uid_base_);
  if (!w.ok()) {
    (void)RemoveTree(tmp);
    return w.error();
  }
  std::string dir = ImagesDir() + "/" + Escape(name);
  if (::rename(tmp.c_str(), dir.c_str()) != 0) {
    int err = errno;
    (void)RemoveTree(tmp);
    // Someone else created it first: theirs is as good as ours.
    if ((err == ENOTEMPTY || err == EEXIST) && PathExists(dir + "/image.json")) return Load(dir);
    return ErrnoValue(err, "rename", tmp + " -> " + dir);
  }
  return Load(dir);
}

Result<std::vector<Image>> ImageStore::List() {
  std::vector<Image> out;
  DIR* d = ::opendir(ImagesDir().c_str());
  if (!d) {
    if (errno == ENOENT) return out;
    return Errno("opendir", ImagesDir());
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  }
  ::closedir(d);
  for (const auto& n : names) {
    auto img = Load(ImagesDir() + "/" + n);
    if (img.ok()) out.push_back(std::move(*img));
  }
  std::sort(out.begin(), out.end(), [](const Image& a, const Image& b) { return a.name < b.name; });
  return out;
}

Result<Image> ImageStore::CommitOci(const Image& img) {
  nlohmann::json j = {{"name", img.name},
                      {"uid_base", uid_base_},
                      {"source", img.source},
                      {"created", NowRfc3339()},
                      {"digest", img.digest},
                      {"size", img.size},
                      {"layers", img.layer_digests},
                      {"blobs", img.blobs},
                      {"config", img.config.ToJson()}};
  WB_RETURN_IF_ERROR(MkdirAll(ImagesDir(), 0755));
  std::string tmp = ImagesDir() + "/.tmp-" + WB_TRY(RandomHex(6));
  WB_RETURN_IF_ERROR(MkdirAll(tmp, 0755));
  auto w = WriteFileAtomic(tmp + "/image.json", j.dump(2) + "\n");
  if (w.ok()) w = CloseToOthers(tmp, uid_base_);
  if (!w.ok()) {
    (void)RemoveTree(tmp);
    return w.error();
  }
  // The index entry appears, or replaces an older one, in one step: readers
  // see the old image or the new one, never a mix.
  std::string dir = ImagesDir() + "/" + Escape(img.name);
  if (::rename(tmp.c_str(), dir.c_str()) != 0) {
    if (errno != ENOTEMPTY && errno != EEXIST) {
      Error e = Errno("rename", tmp + " -> " + dir);
      (void)RemoveTree(tmp);
      return e;
    }
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
      Error e = Errno("renameat2(RENAME_EXCHANGE)", tmp + " <-> " + dir);
      (void)RemoveTree(tmp);
      return e;
    }
    (void)RemoveTree(tmp);  // now the old entry
  }
  return Load(dir);
}

namespace {

// "dev:ino" of a dir: what a sandbox's record and a trash entry are matched
// by (a rename into trash/ keeps it), "" when path does not exist.
std::string DirId(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

std::vector<std::string> Entries(const std::string& d) {
  std::vector<std::string> out;
  if (DIR* dir = ::opendir(d.c_str())) {
    while (dirent* e = ::readdir(dir)) {
      if (std::string n = e->d_name; n != "." && n != "..") out.push_back(n);
    }
    ::closedir(dir);
  }
  return out;
}

// Every dir id some sandbox dir records (sandbox dirs of dead sandboxes
// count until gc removes them: a dir is kept too long, never deleted early).
std::set<std::string> LowerIdsInUse(const std::string& state_dir) {
  std::set<std::string> ids;
  const std::string base = state_dir + "/sandboxes";
  for (const auto& n : Entries(base)) {
    auto text = ReadFile(base + "/" + n + "/lowers");
    if (!text.ok()) continue;
    for (const auto& line : Split(*text, '\n')) {
      if (!line.empty()) ids.insert(std::string(line));
    }
  }
  return ids;
}

}  // namespace

Result<void> RecordLowerDirs(const std::string& sandbox_dir, const Image& img) {
  auto ids = [&]() -> Result<std::string> {
    std::string out;
    for (const auto& d : img.lower_dirs) {
      std::string id = DirId(d);
      if (id.empty()) {
        return Fail(ErrorCode::kNotFound, "image " + img.name, d,
                    "was removed while a sandbox of it was being made");
      }
      out += id + "\n";
    }
    return out;
  };
  const std::string before = WB_TRY(ids());
  WB_RETURN_IF_ERROR(WriteFileAtomic(sandbox_dir + "/lowers", before, 0600));
  // A remover renames a dir into trash/ before it reads the records. So a
  // dir still in place after the record is written either was not renamed,
  // or was renamed after the record existed, and the remover saw it.
  if (WB_TRY(ids()) != before) {
    return Fail(ErrorCode::kNotFound, "image " + img.name, sandbox_dir,
                "was removed while a sandbox of it was being made");
  }
  return Ok();
}

Result<void> ImageStore::Discard(const std::string& path) {
  WB_RETURN_IF_ERROR(MkdirAll(TrashDir(), 0700));
  std::string to = TrashDir() + "/" + WB_TRY(RandomHex(6));
  if (::rename(path.c_str(), to.c_str()) != 0) return Errno("rename", path + " -> " + to);
  return Ok();
}

Result<size_t> ImageStore::EmptyTrash() {
  const std::set<std::string> in_use = LowerIdsInUse(state_dir_);
  size_t kept = 0;
  for (const auto& n : Entries(TrashDir())) {
    const std::string p = TrashDir() + "/" + n;
    // An image's entry is mounted as its rootfs/; a layer dir as itself.
    if (in_use.count(DirId(p)) || in_use.count(DirId(p + "/rootfs"))) {
      ++kept;
      continue;
    }
    WB_RETURN_IF_ERROR(RemoveTree(p));
  }
  return kept;
}

Result<bool> ImageStore::Remove(const std::string& input) {
  WB_RETURN_IF_ERROR(ValidateName(input));
  const std::string name = Resolve(input);
  std::string dir = ImagesDir() + "/" + Escape(name);
  if (!PathExists(dir + "/image.json")) return Fail("image rm", input, "no such image");
  // Out of the index at once (rename), then deleted unless a sandbox mounts it.
  const std::string id = DirId(dir + "/rootfs");
  WB_RETURN_IF_ERROR(Discard(dir));
  (void)WB_TRY(EmptyTrash());
  return id.empty() || !LowerIdsInUse(state_dir_).count(id);
}

Result<PruneReport> ImageStore::Prune() {
  PruneReport rep;
  WB_RETURN_IF_ERROR(MkdirAll(LocksDir(), 0700));
  // Pulls and imports hold the store lock shared for their whole run: what
  // they have written but not yet committed is never taken for garbage.
  UniqueFd lock = WB_TRY(LockPath(LocksDir() + "/store.lock", true));
  std::set<std::string> blobs, layers;  // hex; "base/hex"
  for (const auto& img : WB_TRY(List())) {
    for (const auto& b : img.blobs) blobs.insert(oci::DigestHex(b));
    for (const auto& l : img.layer_digests)
      layers.insert(std::to_string(img.uid_base) + "/" + oci::DigestHex(l));
  }
  const auto& entries = Entries;
  const std::string bdir = state_dir_ + "/blobs/sha256";
  for (const auto& n : entries(bdir)) {
    if (blobs.count(n)) continue;
    struct stat st;
    if (::lstat((bdir + "/" + n).c_str(), &st) == 0) rep.bytes += static_cast<uint64_t>(st.st_size);
    if (::unlink((bdir + "/" + n).c_str()) != 0) return Errno("unlink", bdir + "/" + n);
    ++rep.blobs;
  }
  const std::string ldir = state_dir_ + "/layers";
  for (const auto& base : entries(ldir)) {
    for (const auto& n : entries(ldir + "/" + base)) {
      if (layers.count(base + "/" + n)) continue;
      WB_RETURN_IF_ERROR(Discard(ldir + "/" + base + "/" + n));
      ++rep.layers;
    }
  }
  for (const auto& n : entries(TmpDir())) {
    WB_RETURN_IF_ERROR(RemoveTree(TmpDir() + "/" + n));
    ++rep.tmp;
  }
  rep.in_use = WB_TRY(EmptyTrash());
  // Per-blob and per-layer lock files: every process that takes one holds
  // the store lock shared first, so none is in use now.
  for (const auto& n : entries(LocksDir())) {
    if (n != "store.lock" && ::unlink((LocksDir() + "/" + n).c_str()) != 0 && errno != ENOENT) {
      return Errno("unlink", LocksDir() + "/" + n);
    }
  }
  return rep;
}

Result<Image> ImageStore::ImportDir(const std::string& name, const std::string& src) {
  WB_RETURN_IF_ERROR(ValidateName(name));
  struct stat st;
  if (::stat(src.c_str(), &st) != 0) return Errno("import-dir", src);
  if (!S_ISDIR(st.st_mode)) return Fail("import-dir", src, "not a directory");
  std::string dir = ImagesDir() + "/" + Escape(name);
  if (PathExists(dir)) return Fail("import-dir", name, "an image with this name exists");
  WB_RETURN_IF_ERROR(MkdirAll(ImagesDir(), 0755));
  std::string tmp = ImagesDir() + "/.tmp-" + WB_TRY(RandomHex(6));
  WB_RETURN_IF_ERROR(MkdirAll(tmp, 0755));
  auto copied = CopyTreeShifted(src, tmp + "/rootfs", uid_base_);
  if (!copied.ok()) {
    (void)RemoveTree(tmp);
    return copied.error().Wrap("import " + src);
  }
  return Commit(name, tmp, "dir:" + src);
}

}  // namespace wb
