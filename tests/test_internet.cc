#include "tests/test_internet.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fs.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"

namespace wb::testing {
bool Connects(const char* ip, int port) {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip, &a.sin_addr);
  return ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

ExecOutcome InternetSh(Sandbox& sb, const std::string& script) {
  proto::ExecRequest req;
  req.argv = {"sh", "-c", script};
  req.timeout_ms = 20000;
  ExecIo io;
  auto r = sb.Exec(req, io);
  EXPECT_OK(r);
  return r.ok() ? std::move(*r) : ExecOutcome{};
}

std::string InternetGet(Sandbox& sb, const std::string& url) {
  std::string hp = url.substr(7, url.size() - 8), host = hp, port = "80";
  if (auto c = hp.find(':'); c != std::string::npos) {
    host = hp.substr(0, c);
    port = hp.substr(c + 1);
  }
  auto o = InternetSh(sb, "h=" + host +
                              "; case $h in *[a-z]*) h=$(nslookup $h 2>/dev/null | sed -n "
                              "'s/^Address:[ \t]*\\([0-9.]*\\)$/\\1/p' | tail -1);; esac; "
                              "[ -n \"$h\" ] || exit 1; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | "
                              "timeout 4 nc $h " +
                              port + " | grep -m1 '^hello'");
  fprintf(stderr, "GET %s: %s%s\n", url.c_str(), o.stdout_data.c_str(), o.stderr_data.c_str());
  return o.stdout_data;
}

bool InternetResolves(Sandbox& sb, const std::string& name) {
  // An address line of the answer (the server's own line ends in :53).
  auto o = InternetSh(
      sb, "nslookup " + name + " 2>/dev/null | sed -n 's/^Address:[ \t]*\\([0-9.]*\\)$/\\1/p'");
  return !o.stdout_data.empty();
}

}  // namespace wb::testing
