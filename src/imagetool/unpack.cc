#include "imagetool/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "imagetool/blob_verify.h"
#include "imagetool/sha256.h"
#include "oci/layer_plan.h"

namespace wb::imagetool {
namespace {

struct ArchiveReadDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct ArchiveWriteDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};

// No component of rel before the last (or including it, when last is true)
// may be a symlink: creating through one could land outside dest. Paths are
// relative to the cwd, which is dest while we unpack.
Result<void> CheckNoSymlink(const std::string& rel, bool last) {
  size_t pos = 0;
  for (;;) {
    size_t slash = rel.find('/', pos);
    if (slash == std::string::npos && !last) return Ok();
    std::string prefix = slash == std::string::npos ? rel : rel.substr(0, slash);
    struct stat st;
    if (::lstat(prefix.c_str(), &st) != 0) {
      if (errno == ENOENT) return Ok();
      return Errno("lstat", prefix);
    }
    if (S_ISLNK(st.st_mode)) {
      return Fail("layer entry", rel,
                  "path goes through the symlink '" + prefix + "' (rejected: it could escape)");
    }
    if (slash == std::string::npos) return Ok();
    pos = slash + 1;
  }
}

// mkdir -p of a clean relative path, new dirs root-owned inside the sandbox.
Result<void> MakeParents(const std::string& rel, uint32_t uid_base) {
  size_t pos = 0;
  while ((pos = rel.find('/', pos)) != std::string::npos) {
    std::string p = rel.substr(0, pos++);
    if (::mkdir(p.c_str(), 0755) == 0) {
      if (::lchown(p.c_str(), uid_base, uid_base) != 0) return Errno("lchown", p);
    } else if (errno != EEXIST) {
      return Errno("mkdir", p);
    }
  }
  return Ok();
}

// libarchive writes relative to the cwd: we work inside dest and go back.
class ScopedChdir {
 public:
  static Result<ScopedChdir> Enter(const std::string& dir) {
    ScopedChdir s;
    s.back_ = UniqueFd(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!s.back_) return Errno("open", ".");
    if (::chdir(dir.c_str()) != 0) return Errno("chdir", dir);
    return s;
  }
  ScopedChdir() = default;
  ScopedChdir(ScopedChdir&&) = default;
  ~ScopedChdir() {
    if (back_ && ::fchdir(back_.get()) != 0) spdlog::debug("fchdir back: {}", std::strerror(errno));
  }

 private:
  UniqueFd back_;
};

std::string ArchiveError(archive* a) {
  const char* s = archive_error_string(a);
  return s ? s : "unknown libarchive error";
}

Error OverCap(const std::string& path, const char* what, uint64_t cap, const std::string& from) {
  return Fail(ErrorCode::kResourceExhausted, "unpack", path,
              "more than " + std::to_string(cap) + " " + what + " (" + from + ")");
}

Result<UnpackStats> Unpack(const std::string& path, const std::string& dest, bool layer,
                           uint32_t uid_base, const UnpackCap& cap) {
  std::unique_ptr<archive, ArchiveReadDeleter> in(archive_read_new());
  archive_read_support_filter_all(in.get());
  archive_read_support_format_tar(in.get());
  if (archive_read_open_filename(in.get(), path.c_str(), 1 << 20) != ARCHIVE_OK) {
    return Fail("open archive", path, ArchiveError(in.get()));
  }
  std::unique_ptr<archive, ArchiveWriteDeleter> out(archive_write_disk_new());
  int flags = ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
              ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;
  // A layer keeps its modes (set-uid included: the owners are sandbox uids)
  // and owners, numeric and shifted by us (no name lookup: host names mean
  // nothing inside); only user.* xattrs survive the filter below. An archive
  // to import is only read by us: no set-uid bits for host root's files.
  if (layer) flags |= ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_XATTR;
  archive_write_disk_set_options(out.get(), flags);
  ScopedChdir cd = WB_TRY(ScopedChdir::Enter(dest));
  UnpackStats stats;
  archive_entry* e = nullptr;
  for (;;) {
    int r = archive_read_next_header(in.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return Fail("read archive", path, ArchiveError(in.get()));
    if (++stats.entries > cap.entries)
      return OverCap(path, "entries", cap.entries, cap.entries_from);
    const char* raw = archive_entry_pathname(e);
    std::string name = raw ? raw : "";
    oci::EntryPlan plan;
    if (layer) {
      plan = WB_TRY(oci::PlanEntry(name));
    } else {
      plan.path = WB_TRY(oci::CleanMemberPath(name));
      plan.action = plan.path.empty() ? oci::EntryAction::kSkip : oci::EntryAction::kWrite;
    }
    switch (plan.action) {
      case oci::EntryAction::kSkip:
        continue;
      case oci::EntryAction::kOpaque: {
        std::string dir = plan.path.empty() ? "." : plan.path;
        WB_RETURN_IF_ERROR(CheckNoSymlink(dir, true));
        WB_RETURN_IF_ERROR(MakeParents(dir + "/x", uid_base));
        // userxattr overlay (the sandbox's mount) reads user.overlay.*.
        if (::lsetxattr(dir.c_str(), "user.overlay.opaque", "y", 1, 0) != 0) {
          return Errno("lsetxattr user.overlay.opaque", dir);
        }
        continue;
      }
      case oci::EntryAction::kWhiteout: {
        WB_RETURN_IF_ERROR(CheckNoSymlink(plan.path, false));
        WB_RETURN_IF_ERROR(MakeParents(plan.path, uid_base));
        // An entry of this same layer at that path gives way to the whiteout.
        WB_RETURN_IF_ERROR(RemoveTree(plan.path));
        if (::mknod(plan.path.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0)
          return Errno("mknod whiteout", plan.path);
        if (::lchown(plan.path.c_str(), uid_base, uid_base) != 0) return Errno("lchown", plan.path);
        continue;
      }
      case oci::EntryAction::kWrite:
        break;
    }
    auto type = archive_entry_filetype(e);
    if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFSOCK) {
      ++stats.skipped_devices;  // unusable in a user namespace
      continue;
    }
    WB_RETURN_IF_ERROR(CheckNoSymlink(plan.path, false));
    archive_entry_set_pathname(e, plan.path.c_str());
    if (const char* hl = archive_entry_hardlink(e)) {
      std::string target = WB_TRY(oci::CleanMemberPath(hl));
      if (target.empty()) return Fail("layer entry", name, "hard link to the root");
      WB_RETURN_IF_ERROR(CheckNoSymlink(target, true));
      archive_entry_set_hardlink(e, target.c_str());
    }
    if (layer) {
      archive_entry_set_uid(e, WB_TRY(oci::ShiftId(archive_entry_uid(e), uid_base, plan.path)));
      archive_entry_set_gid(e, WB_TRY(oci::ShiftId(archive_entry_gid(e), uid_base, plan.path)));
      std::vector<std::pair<std::string, std::string>> keep;
      archive_entry_xattr_reset(e);
      const char* xn;
      const void* xv;
      size_t xs;
      while (archive_entry_xattr_next(e, &xn, &xv, &xs) == ARCHIVE_OK) {
        if (oci::KeepXattr(xn))
          keep.emplace_back(xn, std::string(static_cast<const char*>(xv), xs));
      }
      archive_entry_xattr_clear(e);
      for (const auto& [k, v] : keep)
        archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    }
    archive_entry_acl_clear(e);
    archive_entry_set_fflags(e, 0, 0);
    if (archive_write_header(out.get(), e) < ARCHIVE_WARN) {
      return Fail("unpack", plan.path, ArchiveError(out.get()));
    }
    if (archive_entry_size(e) > 0 && type == AE_IFREG) {
      const void* buf;
      size_t size;
      la_int64_t off;
      for (;;) {
        int rr = archive_read_data_block(in.get(), &buf, &size, &off);
        if (rr == ARCHIVE_EOF) break;
        if (rr < ARCHIVE_WARN)
          return Fail("read archive", path + " (" + plan.path + ")", ArchiveError(in.get()));
        if (archive_write_data_block(out.get(), buf, size, off) < ARCHIVE_WARN) {
          return Fail("unpack", plan.path, ArchiveError(out.get()));
        }
        stats.bytes += size;
        if (stats.bytes > cap.bytes) {
          return OverCap(path, "bytes unpacked", cap.bytes, cap.bytes_from);
        }
      }
    }
    if (archive_write_finish_entry(out.get()) < ARCHIVE_WARN) {
      return Fail("unpack", plan.path, ArchiveError(out.get()));
    }
  }
  if (archive_write_close(out.get()) < ARCHIVE_WARN)
    return Fail("unpack", dest, ArchiveError(out.get()));
  return stats;
}

uint32_t g_claim_base = 0;
bool InRange(uint32_t id) { return id >= g_claim_base && id - g_claim_base < 65536; }
int ClaimOne(const char* p, const struct stat* st, int, FTW*) {
  if (InRange(st->st_uid) && InRange(st->st_gid)) return 0;
  uid_t uid = InRange(st->st_uid) ? st->st_uid : g_claim_base;
  gid_t gid = InRange(st->st_gid) ? st->st_gid : g_claim_base;
  return ::lchown(p, uid, gid) == 0 ? 0 : errno;
}

}  // namespace

Result<UnpackStats> UnpackLayer(const std::string& archive, const std::string& dest,
                                uint32_t uid_base, const UnpackCap& cap) {
  UnpackStats s = WB_TRY(Unpack(archive, dest, true, uid_base, cap));
  // Directories libarchive made for members whose parents were not in the
  // layer belong to host root: give them (and the layer root) to root
  // inside, so the sandbox does not see them as nobody.
  g_claim_base = uid_base;
  if (int rc = ::nftw(dest.c_str(), ClaimOne, 64, FTW_PHYS); rc != 0) {
    return rc > 0 ? ErrnoValue(rc, "lchown", dest) : Errno("nftw", dest);
  }
  if (::chmod(dest.c_str(), 0755) != 0) return Errno("chmod", dest);
  return s;
}

namespace {

// Feeds libarchive from an fd, showing every raw (compressed) byte to a
// BlobVerifier on the way: one pass checks the blob and its content.
struct RawTap {
  int fd = -1;
  BlobVerifier* verifier = nullptr;
  Result<void> verified = Ok();
  std::vector<char> buf = std::vector<char>(1 << 20);

  ssize_t ReadMore() {
    ssize_t n;
    do {
      n = ::read(fd, buf.data(), buf.size());
    } while (n < 0 && errno == EINTR);
    if (n > 0 && verifier && verified.ok()) {
      verified = verifier->Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    }
    return n;
  }
  static la_ssize_t Read(archive* a, void* self, const void** out) {
    auto* t = static_cast<RawTap*>(self);
    ssize_t n = t->ReadMore();
    if (n < 0) {
      archive_set_error(a, errno, "read: %s", strerror(errno));
      return -1;
    }
    *out = t->buf.data();
    return n;
  }
  // The rest of the file through the verifier, then its verdict.
  Result<void> Finish() {
    if (!verifier) return Ok();
    while (verified.ok() && ReadMore() > 0) {
    }
    if (!verified.ok()) return verified;
    return verifier->Finish();
  }
};

}  // namespace

Result<std::string> UncompressedDigest(const std::string& path, const oci::Descriptor* blob) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return Errno("open", path);
  std::optional<BlobVerifier> verifier;
  if (blob) verifier.emplace(*blob);
  RawTap tap;
  tap.fd = fd.get();
  tap.verifier = verifier ? &*verifier : nullptr;
  // libarchive's "raw" format: the whole (decompressed) stream as one entry.
  std::unique_ptr<archive, ArchiveReadDeleter> in(archive_read_new());
  archive_read_support_filter_all(in.get());
  archive_read_support_format_raw(in.get());
  // A blob that is not what its descriptor says is reported as such, even
  // when it also fails to decompress.
  auto fail = [&](const char* call) -> Error {
    Error e = Fail(call, path, ArchiveError(in.get()));
    auto v = tap.Finish();
    return v.ok() ? e : v.error();
  };
  if (archive_read_open(in.get(), &tap, nullptr, &RawTap::Read, nullptr) != ARCHIVE_OK) {
    return fail("open archive");
  }
  Sha256 h;
  archive_entry* e = nullptr;
  int r = archive_read_next_header(in.get(), &e);
  if (r < ARCHIVE_WARN && r != ARCHIVE_EOF) return fail("read archive");
  while (r != ARCHIVE_EOF) {
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t off = 0;
    int rr = archive_read_data_block(in.get(), &buf, &size, &off);
    if (rr == ARCHIVE_EOF) break;
    if (rr < ARCHIVE_WARN) return fail("read archive");
    h.Update(std::string_view(static_cast<const char*>(buf), size));
  }
  WB_RETURN_IF_ERROR(tap.Finish());
  return h.Digest();
}

Result<UnpackStats> ExtractArchive(const std::string& archive, const std::string& dest,
                                   const UnpackCap& cap) {
  return Unpack(archive, dest, false, 0, cap);
}

namespace {

Result<uint64_t> EnvLimit(const char* name, uint64_t dflt, bool size, std::string* from) {
  const char* v = std::getenv(name);
  std::string text = v && *v ? v : (size ? std::to_string(dflt >> 30) + "g" : std::to_string(dflt));
  *from = std::string(name) + "=" + text;
  if (!v || !*v) return dflt;
  auto n = size ? ParseSize(text, name) : ParseUint(text, name);
  if (!n.ok() || *n == 0) {
    return Fail(ErrorCode::kInvalidArgument, name, text,
                size ? "expected a size such as 16g" : "expected a positive count");
  }
  return *n;
}

UnpackCap Min(const UnpackCap& a, const UnpackCap& b) {
  UnpackCap c = a;
  if (b.bytes < c.bytes) {
    c.bytes = b.bytes;
    c.bytes_from = b.bytes_from;
  }
  if (b.entries < c.entries) {
    c.entries = b.entries;
    c.entries_from = b.entries_from;
  }
  return c;
}

}  // namespace

Result<UnpackLimits> UnpackLimitsFromEnv() {
  UnpackLimits l;
  l.layer.bytes =
      WB_TRY(EnvLimit("WARMBOX_MAX_LAYER_SIZE", uint64_t{16} << 30, true, &l.layer.bytes_from));
  l.layer.entries =
      WB_TRY(EnvLimit("WARMBOX_MAX_LAYER_FILES", 1000000, false, &l.layer.entries_from));
  l.image.bytes =
      WB_TRY(EnvLimit("WARMBOX_MAX_IMAGE_SIZE", uint64_t{32} << 30, true, &l.image.bytes_from));
  l.image.entries =
      WB_TRY(EnvLimit("WARMBOX_MAX_IMAGE_FILES", 2000000, false, &l.image.entries_from));
  return l;
}

UnpackCap UnpackBudget::NextLayer() const {
  UnpackCap left = limits_.image;
  left.bytes -= std::min(bytes_, left.bytes);
  left.entries -= std::min(entries_, left.entries);
  return Min(limits_.layer, left);
}

void UnpackBudget::Spend(const UnpackStats& s) {
  bytes_ += s.bytes;
  entries_ += s.entries;
}

}  // namespace wb::imagetool
