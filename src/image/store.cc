#include "image/store.h"

#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/strings.h"
#include "image/default_image.h"
#include "image/tree_copy.h"

namespace wb {
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
  if (name.empty() || name.size() > 255) return Fail("image name", name, "must be 1-255 characters");
  for (unsigned char c : name) {
    if (!(std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == '/' || c == ':' || c == '@')) {
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
  img.lower_dirs.push_back(dir + "/rootfs");
  if (j.contains("config") && j["config"].is_object()) {
    const auto& c = j["config"];
    if (c.contains("Env") && c["Env"].is_array()) {
      for (const auto& e : c["Env"]) {
        if (e.is_string()) img.config.env.push_back(e.get<std::string>());
      }
    }
    if (c.contains("WorkingDir") && c["WorkingDir"].is_string()) img.config.working_dir = c["WorkingDir"];
    if (c.contains("User") && c["User"].is_string()) img.config.user = c["User"];
  }
  return img;
}

bool ImageStore::Exists(const std::string& name) const {
  return name == kDefaultImage || PathExists(state_dir_ + "/images/" + Escape(name) + "/image.json");
}

Result<Image> ImageStore::Get(const std::string& name) {
  WB_CHECK(ValidateName(name));
  std::string dir = ImagesDir() + "/" + Escape(name);
  if (!PathExists(dir + "/image.json")) {
    if (name != kDefaultImage) {
      return Fail("image", name, "no such image (see 'warmbox image ls'; import one with "
                                 "'warmbox image import-dir NAME DIR')");
    }
    std::lock_guard<std::mutex> lock(build_mu_);
    if (PathExists(dir + "/image.json")) return Load(dir);  // built while we waited
    WB_CHECK(MkdirAll(ImagesDir(), 0755));
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
  return img;
}

Result<Image> ImageStore::Commit(const std::string& name, const std::string& tmp,
                                 const std::string& source) {
  nlohmann::json j = {{"name", name},
                      {"uid_base", uid_base_},
                      {"source", source},
                      {"created", NowRfc3339()},
                      {"layers", {"rootfs"}},
                      {"config", {{"Env", nlohmann::json::array()}, {"WorkingDir", "/"}, {"User", ""}}}};
  auto w = WriteFileAtomic(tmp + "/image.json", j.dump(2) + "\n");
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

Result<Image> ImageStore::ImportDir(const std::string& name, const std::string& src) {
  WB_CHECK(ValidateName(name));
  struct stat st;
  if (::stat(src.c_str(), &st) != 0) return Errno("import-dir", src);
  if (!S_ISDIR(st.st_mode)) return Fail("import-dir", src, "not a directory");
  std::string dir = ImagesDir() + "/" + Escape(name);
  if (PathExists(dir)) return Fail("import-dir", name, "an image with this name exists");
  WB_CHECK(MkdirAll(ImagesDir(), 0755));
  std::string tmp = ImagesDir() + "/.tmp-" + WB_TRY(RandomHex(6));
  WB_CHECK(MkdirAll(tmp, 0755));
  auto copied = CopyTreeShifted(src, tmp + "/rootfs", uid_base_);
  if (!copied.ok()) {
    (void)RemoveTree(tmp);
    return copied.error().Wrap("import " + src);
  }
  return Commit(name, tmp, "dir:" + src);
}

}  // namespace wb
