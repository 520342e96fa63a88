#include "sandbox/agent_args.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace wb {
namespace {

using Strings = std::vector<std::string>;

AgentArgs Guest() {
  AgentArgs a;
  a.mode = AgentArgs::Mode::kGuest;
  a.layers = 2;
  a.tmpfs_size = 1 << 20;
  a.hostname = "abc";
  a.seccomp = "unconfined";
  a.nofile = 64;
  return a;
}

TEST(AgentArgsTest, NsArgv) {
  AgentArgs a;
  a.scratch = "/s/x/scratch";
  a.lower = "/l1:/l2";
  a.tmpfs_size = 4096;
  a.hostname = "x";
  EXPECT_EQ(a.Argv(), (Strings{"warmbox-agent", "--listen-fd", "3", "--ns-setup", "--scratch",
                               "/s/x/scratch", "--lower", "/l1:/l2", "--tmpfs-size", "4096",
                               "--hostname", "x", "--seccomp", "default", "--nofile", "1024"}));
}

TEST(AgentArgsTest, NsArgvWithIdmappedLayerFds) {
  AgentArgs a;
  a.scratch = "/s";
  a.lower = "/l1:/l2";
  a.lower_fds = {4, 5};  // replace the paths (sandbox/ns/idmap_mount.h)
  a.tmpfs_size = 1;
  a.hostname = "x";
  EXPECT_EQ(a.Argv(), (Strings{"warmbox-agent", "--listen-fd", "3", "--ns-setup", "--scratch", "/s",
                               "--lower-fds", "4,5", "--tmpfs-size", "1", "--hostname", "x",
                               "--seccomp", "default", "--nofile", "1024"}));
}

TEST(AgentArgsTest, GuestArgvAndKey) {
  AgentArgs a = Guest();
  EXPECT_EQ(a.Argv(), (Strings{"--guest", "--layers", "2", "--tmpfs-size", "1048576", "--hostname",
                               "abc", "--seccomp", "unconfined", "--nofile", "64"}));
  // The key text of templates built before AgentArgs existed: unchanged.
  EXPECT_EQ(a.KeyArgs(), (Strings{"--layers", "2", "--tmpfs-size", "1048576", "--seccomp",
                                  "unconfined", "--nofile", "64"}));
}

TEST(AgentArgsTest, EveryArgumentButTheHostnameChangesTheKey) {
  const Strings key = Guest().KeyArgs();
  AgentArgs h = Guest();
  h.hostname = "warmbox-template";
  EXPECT_EQ(h.KeyArgs(), key);
  EXPECT_NE(h.Argv(), Guest().Argv());
  AgentArgs l = Guest();
  l.layers = 3;
  EXPECT_NE(l.KeyArgs(), key);
  AgentArgs t = Guest();
  t.tmpfs_size = 2 << 20;
  EXPECT_NE(t.KeyArgs(), key);
  AgentArgs s = Guest();
  s.seccomp = "default";
  EXPECT_NE(s.KeyArgs(), key);
  AgentArgs n = Guest();
  n.nofile = 65;
  EXPECT_NE(n.KeyArgs(), key);
  // Every argument of the argv but "--guest" and the hostname is in the key.
  Strings argv = Guest().Argv();
  Strings rest(argv.begin() + 1, argv.end());
  auto host = std::find(rest.begin(), rest.end(), "--hostname");
  ASSERT_NE(host, rest.end());
  rest.erase(host, host + 2);
  EXPECT_EQ(rest, key);
}

}  // namespace
}  // namespace wb
