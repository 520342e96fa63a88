// File operations and watches of live sandboxes (docs/protocol.md, "Files"):
// the server side of L. One operation per connection. Every filesystem call
// that resolves a path runs inside an FsIdentity of the requesting user
// (file_ops.h); an opened file is then read or written with the identity
// restored, which changes nothing (the kernel checked at open).
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include "agent/file_ops.h"
#include "agent/server_impl.h"
#include "base/fs.h"

namespace wb::agent {
namespace {

constexpr uint32_t kWatchMask = IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_EXCL_UNLINK;
// Queued watch events beyond this wait in the kernel (which drops the
// overflow) rather than in the agent.
constexpr size_t kReadHighWater = 256 * 1024;

std::string Join(const std::string& dir, const char* name) {
  return dir == "/" ? "/" + std::string(name) : dir + "/" + name;
}

// Watches dir and, when recursive, every directory under it (not through
// symlinks). Runs inside the user's FsIdentity: inotify_add_watch needs
// read permission on each.
Result<void> AddWatches(int ifd, const std::string& dir, bool recursive,
                        std::map<int, std::string>& dirs, int depth = 0) {
  int wd = ::inotify_add_watch(ifd, dir.c_str(), kWatchMask);
  if (wd < 0) return FsErrno("inotify_add_watch", dir);
  dirs[wd] = dir;
  if (!recursive || depth > 64) return Ok();
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return Ok();
  NameMaps none;
  auto entries = ListDir(dir, 1, none);
  if (!entries.ok()) return Ok();  // unreadable below: watched at its own level only
  for (const auto& e : *entries) {
    if (e.type != "dir") continue;
    auto r = AddWatches(ifd, e.path, true, dirs, depth + 1);
    // A subdirectory the user may not read is not watched; the rest is.
    if (!r.ok() && r.error().code == ErrorCode::kResourceExhausted) return r;
  }
  return Ok();
}

}  // namespace

void ServerImpl::OnFileRequest(uint64_t conn_id, Conn& c, const proto::FileRequest& req) {
  auto cred = Resolve(req.user);
  if (!cred.ok()) return SendOpError(conn_id, cred.error());
  // Names for stats, read as the agent (the user may not read them).
  auto passwd = ReadFile(opts_.passwd_path);
  auto group = ReadFile(opts_.group_path);
  NameMaps names =
      NameMaps::Parse(passwd.ok() ? passwd.value() : "", group.ok() ? group.value() : "");

  if (req.op == "watch") return StartWatch(conn_id, c, req, std::move(*cred));

  std::optional<Error> err;
  std::string reply;  // the l payload, when answered now
  {
    auto id = FsIdentity::Enter(*cred);
    if (!id.ok()) return SendOpError(conn_id, id.error());
    auto stat_reply = [&](const std::string& path, std::optional<bool> created = std::nullopt) {
      auto st = StatPath(path, names);
      if (!st.ok()) {
        err = st.error();
        return;
      }
      st->created = created;
      reply = proto::ToJson(*st);
    };
    if (req.op == "stat") {
      stat_reply(req.path);
    } else if (req.op == "list") {
      auto l = ListDir(req.path, req.depth, names);
      if (l.ok()) {
        reply = proto::ToJson(*l);
      } else {
        err = l.error();
      }
    } else if (req.op == "mkdir") {
      bool created = false;
      auto r = MakeDirs(req.path, req.mode.value_or(0755), &created);
      if (r.ok()) {
        stat_reply(req.path, created);
      } else {
        err = r.error();
      }
    } else if (req.op == "remove") {
      auto r = RemovePath(req.path, req.recursive);
      if (r.ok()) {
        reply = "{}";
      } else {
        err = r.error();
      }
    } else if (req.op == "rename") {
      auto r = RenamePath(req.path, req.to);
      if (r.ok()) {
        stat_reply(req.to);
      } else {
        err = r.error();
      }
    } else if (req.op == "read") {
      auto fd = OpenForRead(req.path);
      if (!fd.ok()) {
        err = fd.error();
      } else {
        stat_reply(req.path);
        c.file = std::make_unique<FileXfer>();
        c.file->kind = FileXfer::kRead;
        c.file->fd = std::move(*fd);
        c.file->path = req.path;
      }
    } else if (req.op == "write") {
      auto t = OpenForWrite(req.path, req.mode.value_or(0644), req.append);
      if (!t.ok()) {
        err = t.error();
      } else {
        c.file = std::make_unique<FileXfer>();
        c.file->kind = FileXfer::kWrite;
        c.file->fd = std::move(t->fd);
        c.file->path = req.path;
        c.file->created = t->created;
        c.file->orig_size = t->orig_size;
        c.file->append = req.append;
        c.file->max_bytes = req.max_bytes;
        c.file->cred = *cred;
      }
    }
  }  // the agent's own identity again
  if (err) {
    c.file.reset();
    return SendOpError(conn_id, *err);
  }
  if (c.file && c.file->kind == FileXfer::kWrite) return;  // l after the last byte
  Send(conn_id, FrameType::kFileReply, reply);
  if (c.file) return PumpFileRead(conn_id, c);
  c.close_after_flush = true;
}

void ServerImpl::PumpFileRead(uint64_t conn_id, Conn& c) {
  // Backpressure: a chunk more only while little is queued for the host, so
  // a file of any size passes through a bounded buffer.
  char buf[kReadChunk];
  while (c.file && c.pending() < kReadHighWater) {
    ssize_t n = ::read(c.file->fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SendOpError(conn_id, FsErrno("read", c.file->path));
    if (n == 0) {
      Send(conn_id, FrameType::kFileEnd, proto::ToJson(proto::FileEnd{c.file->bytes}));
      c.file.reset();
      c.close_after_flush = true;
      return;
    }
    c.file->bytes += static_cast<uint64_t>(n);
    Send(conn_id, FrameType::kStdout, std::string_view(buf, static_cast<size_t>(n)));
  }
}

void ServerImpl::FileWriteFrame(uint64_t conn_id, Conn& c, const proto::Frame& f) {
  FileXfer& x = *c.file;
  if (x.kind != FileXfer::kWrite) {
    ReleaseConn(conn_id, c);
    Send(conn_id, FrameType::kFailure, "unexpected stdin frame");
    c.close_after_flush = true;
    c.peer_closed = true;
    return;
  }
  if (f.type == FrameType::kStdin) {
    if (x.max_bytes && x.bytes + f.payload.size() > x.max_bytes) {
      // ReleaseConn (from SendOpError) undoes the partial upload.
      return SendOpError(conn_id, Fail(ErrorCode::kResourceExhausted, "write", x.path,
                                       "upload exceeds max_bytes " + std::to_string(x.max_bytes)));
    }
    // A regular file: write blocks at most for the disk, and the upload is
    // read from the host no faster than it is written (one frame at a time).
    size_t off = 0;
    while (off < f.payload.size()) {
      ssize_t n = ::write(x.fd.get(), f.payload.data() + off, f.payload.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return SendOpError(conn_id, FsErrno("write", x.path));
      off += static_cast<size_t>(n);
    }
    x.bytes += f.payload.size();
    return;
  }
  // C: the upload is complete.
  x.fd.reset();
  auto passwd = ReadFile(opts_.passwd_path);
  auto group = ReadFile(opts_.group_path);
  NameMaps names =
      NameMaps::Parse(passwd.ok() ? passwd.value() : "", group.ok() ? group.value() : "");
  Result<proto::FileStat> st = Fail("stat", x.path, "");
  {
    auto id = FsIdentity::Enter(x.cred);
    if (!id.ok()) return SendOpError(conn_id, id.error());
    st = StatPath(x.path, names);
  }
  c.file.reset();
  if (!st.ok()) return SendOpError(conn_id, st.error());
  Send(conn_id, FrameType::kFileReply, proto::ToJson(*st));
  c.close_after_flush = true;
  c.peer_closed = true;
}

void AbortUpload(FileXfer& x) {
  if (x.kind != FileXfer::kWrite || !x.fd) return;
  // An upload that did not end with C (refused, failed, or its host went
  // away) leaves nothing: a file it created goes, one it appended to is cut
  // back to its old size. As the user, who made it.
  auto id = FsIdentity::Enter(x.cred);
  if (x.created) {
    ::unlink(x.path.c_str());
  } else if (x.append && ::ftruncate(x.fd.get(), x.orig_size) != 0) {
    errno = 0;  // best effort: the error already sent is what matters
  }
  x.fd.reset();
}

void ServerImpl::StartWatch(uint64_t conn_id, Conn& c, const proto::FileRequest& req,
                            Credentials cred) {
  auto x = std::make_unique<FileXfer>();
  x->kind = FileXfer::kWatch;
  x->path = req.path;
  x->recursive = req.recursive;
  x->cred = std::move(cred);
  x->inotify.fd = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!x->inotify.fd) return SendOpError(conn_id, Errno("inotify_init1", ""));
  {
    auto id = FsIdentity::Enter(x->cred);
    if (!id.ok()) return SendOpError(conn_id, id.error());
    auto r = AddWatches(x->inotify.fd.get(), req.path, req.recursive, x->dirs);
    if (!r.ok()) return SendOpError(conn_id, r.error());
  }
  c.file = std::move(x);
  Send(conn_id, FrameType::kFileReply, "{}");
  SetInterest(c.file->inotify, Tag(kInotify, conn_id), EPOLLIN);
}

void ServerImpl::OnInotify(uint64_t conn_id) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end() || !it->second.file || it->second.file->kind != FileXfer::kWatch) return;
  Conn& c = it->second;
  FileXfer& x = *c.file;
  alignas(inotify_event) char buf[64 * 1024];
  ssize_t n = ::read(x.inotify.fd.get(), buf, sizeof buf);
  if (n <= 0) return;  // EAGAIN
  std::vector<proto::WatchEvent> events;
  for (char* p = buf; p < buf + n;) {
    auto* ev = reinterpret_cast<inotify_event*>(p);
    p += sizeof(inotify_event) + ev->len;
    auto dir = x.dirs.find(ev->wd);
    if (dir == x.dirs.end()) continue;  // IN_Q_OVERFLOW (wd -1), or a watch already gone
    if (ev->mask & IN_IGNORED) {
      x.dirs.erase(dir);
      continue;
    }
    std::string path = ev->len ? Join(dir->second, ev->name) : dir->second;
    bool is_dir = ev->mask & IN_ISDIR;
    const char* type = nullptr;
    if (ev->mask & IN_CREATE) {
      type = "create";
    } else if (ev->mask & IN_MOVED_TO) {
      type = "create";  // the new name of a rename (the old one came as rename)
    } else if (ev->mask & IN_MODIFY) {
      type = "write";
    } else if (ev->mask & (IN_DELETE | IN_DELETE_SELF)) {
      type = "remove";
      is_dir = is_dir || (ev->mask & IN_DELETE_SELF && dir->second == path && !ev->len);
    } else if (ev->mask & (IN_MOVED_FROM | IN_MOVE_SELF)) {
      type = "rename";
    } else if (ev->mask & IN_ATTRIB) {
      type = "chmod";
    }
    if (!type) continue;
    // A watched directory's own removal is also reported by its parent.
    if ((ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) && dir->second != x.path) continue;
    // A burst of writes to one file is one event per read.
    if (!events.empty() && events.back().type == type && events.back().path == path) continue;
    events.push_back({type, path, is_dir});
    if (x.recursive && is_dir && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
      // The new directory (and whatever was made in it before this add) is
      // watched from now on; as the user.
      auto id = FsIdentity::Enter(x.cred);
      if (id.ok()) (void)AddWatches(x.inotify.fd.get(), path, true, x.dirs);
    }
  }
  if (!events.empty()) Send(conn_id, FrameType::kWatchEvents, proto::ToJson(events));
}

}  // namespace wb::agent
