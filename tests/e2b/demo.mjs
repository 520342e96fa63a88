// make demo's E2B part: the official SDK, unchanged, against the local daemon.
// E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY come from scripts/demo.
import { Sandbox } from 'e2b'

const t0 = performance.now()
const sbx = await Sandbox.create()
const t1 = performance.now()
console.log(`Sandbox.create()                 -> ${sbx.sandboxId} in ${(t1 - t0).toFixed(1)} ms (the first: a pool miss)`)
const r = await sbx.commands.run('echo "hello from $(whoami) on $(. /etc/os-release; echo $PRETTY_NAME)"; python3 --version')
console.log(`commands.run(...)                -> exit ${r.exitCode}: ${r.stdout.trim().replace(/\n/g, ' | ')}`)
await sbx.files.write('/home/user/hello.txt', 'written through the E2B SDK\n')
console.log(`files.read('/home/user/hello.txt') -> ${JSON.stringify(await sbx.files.read('/home/user/hello.txt'))}`)
const ls = await sbx.files.list('/home/user')
console.log(`files.list('/home/user')         -> ${ls.map(e => e.name).join(', ')}`)
await sbx.kill()
console.log('kill()                           -> done')
// The first create made base's warm pool; the next one claims from it.
const t2 = performance.now()
const again = await Sandbox.create()
console.log(`Sandbox.create() again          -> ${again.sandboxId} in ${(performance.now() - t2).toFixed(1)} ms (a warm claim)`)
await again.kill()
