#include "agent/seccomp.h"

#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memory>

#include "base/fd.h"

namespace wb::agent {

Result<std::vector<sock_filter>> CompileSeccomp(const SeccompPolicy& policy) {
  std::vector<sock_filter> prog;
  if (policy.unconfined) return prog;
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(SCMP_ACT_ALLOW),
                                                       seccomp_release);
  if (!ctx) return Fail("seccomp_init", "", "failed");
  for (const auto& r : policy.deny) {
    int nr = seccomp_syscall_resolve_name(r.syscall.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    uint32_t action = SCMP_ACT_ERRNO(static_cast<uint32_t>(r.errno_value ? r.errno_value : EPERM));
    int rc;
    if (r.arg < 0) {
      rc = seccomp_rule_add(ctx.get(), action, nr, 0);
    } else {
      scmp_arg_cmp cmp =
          r.op == SeccompRule::Op::kEq
              ? SCMP_CMP(static_cast<unsigned>(r.arg), SCMP_CMP_EQ, r.value)
              : SCMP_CMP(static_cast<unsigned>(r.arg), SCMP_CMP_MASKED_EQ, r.mask, r.value);
      rc = seccomp_rule_add(ctx.get(), action, nr, 1, cmp);
    }
    if (rc < 0) return ErrnoValue(-rc, "seccomp_rule_add", r.syscall);
  }
  // libseccomp 2.5 exports to an fd only: a memfd, read back.
  UniqueFd mem(::memfd_create("seccomp-bpf", MFD_CLOEXEC));
  if (!mem) return Errno("memfd_create", "seccomp-bpf");
  if (int rc = seccomp_export_bpf(ctx.get(), mem.get()); rc < 0)
    return ErrnoValue(-rc, "seccomp_export_bpf", "");
  off_t size = ::lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0)
    return Fail("seccomp_export_bpf", "", "bad program size");
  prog.resize(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(mem.get(), prog.data(), static_cast<size_t>(size), 0) != size)
    return Errno("pread", "seccomp-bpf");
  return prog;
}

}  // namespace wb::agent
