#include "image/tree_copy.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "base/fs.h"

namespace wb {
namespace {

constexpr uint32_t kRange = 65536;

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

Error ArchiveError(archive* a, const char* call, const std::string& arg) {
  const char* msg = archive_error_string(a);
  return Error{call, arg, archive_errno(a), msg ? msg : ""};
}

}  // namespace

Result<void> CopyTreeShifted(const std::string& src, const std::string& dst, uint32_t uid_base) {
  if (PathExists(dst)) return Fail("copy tree", dst, "destination exists");
  ArchivePtr reader(archive_read_disk_new());
  ArchivePtr writer(archive_write_disk_new());
  if (!reader || !writer) return Fail("archive_*_new", src, "out of memory");
  archive_read_disk_set_behavior(reader.get(), ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
  archive_read_disk_set_symlink_physical(reader.get());
  archive_read_disk_set_standard_lookup(reader.get());
  archive_write_disk_set_options(writer.get(), ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM |
                                                   ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
                                                   ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                   ARCHIVE_EXTRACT_SECURE_SYMLINKS);
  std::unique_ptr<archive_entry_linkresolver, void (*)(archive_entry_linkresolver*)> links(
      archive_entry_linkresolver_new(), archive_entry_linkresolver_free);
  archive_entry_linkresolver_set_strategy(links.get(), ARCHIVE_FORMAT_TAR_USTAR);

  if (archive_read_disk_open(reader.get(), src.c_str()) != ARCHIVE_OK) {
    return ArchiveError(reader.get(), "archive_read_disk_open", src);
  }
  std::string prefix = src;
  while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
  for (;;) {
    archive_entry* entry = archive_entry_new();
    int r = archive_read_next_header2(reader.get(), entry);
    if (r == ARCHIVE_EOF) {
      archive_entry_free(entry);
      break;
    }
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      Error e = ArchiveError(reader.get(), "read", src);
      archive_entry_free(entry);
      return e;
    }
    archive_read_disk_descend(reader.get());
    std::string path = archive_entry_pathname(entry);
    mode_t type = archive_entry_filetype(entry);
    if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
      archive_entry_free(entry);  // devices, fifos, sockets: unusable in a user namespace
      continue;
    }
    int64_t uid = archive_entry_uid(entry), gid = archive_entry_gid(entry);
    if (uid < 0 || uid >= kRange || gid < 0 || gid >= kRange) {
      archive_entry_free(entry);
      return Fail("copy tree", path, "owner " + std::to_string(uid) + ":" + std::to_string(gid) +
                                         " is outside the sandbox's 65536 ids");
    }
    archive_entry_set_uid(entry, uid_base + uid);
    archive_entry_set_gid(entry, uid_base + gid);
    // Names would map the shifted ids back through the host's passwd.
    archive_entry_set_uname(entry, nullptr);
    archive_entry_set_gname(entry, nullptr);
    archive_entry_set_pathname(entry, (dst + path.substr(prefix.size())).c_str());

    archive_entry* spare = nullptr;
    archive_entry_linkify(links.get(), &entry, &spare);
    // A second name of a hard-linked file now carries hardlink = the first
    // (already rewritten) pathname and size 0: write_disk links it.
    r = archive_write_header(writer.get(), entry);
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      Error e = ArchiveError(writer.get(), "write", archive_entry_pathname(entry));
      archive_entry_free(entry);
      if (spare) archive_entry_free(spare);
      return e;
    }
    if (type == AE_IFREG && archive_entry_size(entry) > 0) {
      const void* buf;
      size_t size;
      la_int64_t off;
      while ((r = archive_read_data_block(reader.get(), &buf, &size, &off)) == ARCHIVE_OK) {
        if (archive_write_data_block(writer.get(), buf, size, off) < 0) {
          Error e = ArchiveError(writer.get(), "write data", archive_entry_pathname(entry));
          archive_entry_free(entry);
          if (spare) archive_entry_free(spare);
          return e;
        }
      }
      if (r != ARCHIVE_EOF) {
        Error e = ArchiveError(reader.get(), "read data", path);
        archive_entry_free(entry);
        if (spare) archive_entry_free(spare);
        return e;
      }
    }
    if (archive_write_finish_entry(writer.get()) < ARCHIVE_WARN) {
      Error e = ArchiveError(writer.get(), "finish", archive_entry_pathname(entry));
      archive_entry_free(entry);
      if (spare) archive_entry_free(spare);
      return e;
    }
    archive_entry_free(entry);
    if (spare) archive_entry_free(spare);
  }
  if (archive_write_close(writer.get()) != ARCHIVE_OK) {
    return ArchiveError(writer.get(), "archive_write_close", dst);
  }
  return Ok();
}

namespace {
thread_local uint32_t g_shift_base;
thread_local int g_shift_errno;
thread_local const char* g_shift_path;

int ShiftOne(const char* path, const struct stat* st, int, FTW*) {
  if (::lchown(path, g_shift_base + st->st_uid, g_shift_base + st->st_gid) != 0) {
    g_shift_errno = errno;
    g_shift_path = path;
    return 1;
  }
  return 0;
}
}  // namespace

Result<void> ShiftOwnership(const std::string& root, uint32_t uid_base) {
  g_shift_base = uid_base;
  g_shift_errno = 0;
  int r = ::nftw(root.c_str(), ShiftOne, 64, FTW_PHYS | FTW_MOUNT);
  if (r != 0) {
    if (g_shift_errno) return ErrnoValue(g_shift_errno, "lchown", g_shift_path ? g_shift_path : root);
    return Errno("nftw", root);
  }
  return Ok();
}

}  // namespace wb
