#include "imagetool/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fd.h"
#include "base/fs.h"
#include "imagetool/blob_verify.h"
#include "imagetool/unpack.h"
#include "oci/reference.h"

namespace wb::imagetool {

Result<bool> EnsureBlob(ImageStore& store, const oci::Descriptor& d, const BlobWriter& write) {
  WB_RETURN_IF_ERROR(oci::ValidateDigest(d.digest));
  const std::string path = store.BlobPath(d.digest);
  if (PathExists(path)) return true;
  const std::string hex = oci::DigestHex(d.digest);
  // One download per blob across processes: the others wait here and then
  // find it in place.
  UniqueFd lock = WB_TRY(LockPath(store.LocksDir() + "/blob-" + hex + ".lock", true));
  if (PathExists(path)) return true;
  const std::string tmp = store.TmpDir() + "/blob-" + hex + "-" + WB_TRY(RandomHex(4));
  auto r = write(tmp);
  if (!r.ok()) {
    (void)RemoveTree(tmp);
    return r.error();
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = Errno("rename", tmp + " -> " + path);
    (void)RemoveTree(tmp);
    return e;
  }
  return false;
}

Result<void> EnsureBlobBytes(ImageStore& store, const oci::Descriptor& d,
                             const std::string& bytes) {
  WB_RETURN_IF_ERROR(VerifyBlob(d, bytes));
  (void)WB_TRY(EnsureBlob(store, d, [&](const std::string& tmp) -> Result<void> {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) return Errno("open", tmp);
    return WriteAll(fd.get(), bytes);
  }));
  return Ok();
}

Result<void> EnsureLayer(ImageStore& store, const oci::Descriptor& d, UnpackBudget& budget) {
  const std::string dir = store.LayerDir(d.digest);
  if (PathExists(dir)) return Ok();
  const std::string hex = oci::DigestHex(d.digest);
  UniqueFd lock = WB_TRY(LockPath(
      store.LocksDir() + "/layer-" + std::to_string(store.uid_base()) + "-" + hex + ".lock", true));
  if (PathExists(dir)) return Ok();
  const std::string tmp = store.TmpDir() + "/layer-" + hex + "-" + WB_TRY(RandomHex(4));
  if (::mkdir(tmp.c_str(), 0755) != 0) return Errno("mkdir", tmp);
  auto r = UnpackLayer(store.BlobPath(d.digest), tmp, store.uid_base(), budget.NextLayer());
  if (!r.ok()) {
    (void)RemoveTree(tmp);
    return r.error().Wrap("layer " + d.digest.substr(0, 19));
  }
  budget.Spend(*r);
  if (::rename(tmp.c_str(), dir.c_str()) != 0) {
    Error e = Errno("rename", tmp + " -> " + dir);
    (void)RemoveTree(tmp);
    return e;
  }
  return Ok();
}

Result<void> CopyVerified(const std::string& from, const oci::Descriptor& d,
                          const std::string& tmp_path) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!in) return Errno("open", from);
  UniqueFd out(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!out) return Errno("open", tmp_path);
  BlobVerifier verify(d);
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read", from);
    }
    if (n == 0) break;
    std::string_view chunk(buf.data(), static_cast<size_t>(n));
    WB_RETURN_IF_ERROR(verify.Update(chunk));
    WB_RETURN_IF_ERROR(WriteAll(out.get(), chunk));
  }
  WB_RETURN_IF_ERROR(verify.Finish());
  return Ok();
}

}  // namespace wb::imagetool
