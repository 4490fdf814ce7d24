import assert from 'node:assert/strict'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, connect, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  decode, encode, RECURSION_AVAILABLE, RECURSION_DESIRED, type DecodedPacket, type RecordType
} from 'dns-packet'
import fc from 'fast-check'
import { silentLogger } from '../../node/logger.ts'
import {
  ANSWER_TTL_SECONDS, DnsResponder, DnsUpstreamError, MAX_FORWARDS_IN_FLIGHT, MAX_QUERY_BYTES, normalizeDnsName,
  readUpstreams, UPSTREAM_TIMEOUT_MS, upstreamsFromResolvConf, type DnsLookup
} from '../../node/mesh/dns.ts'
import { Counters } from '../../node/metrics.ts'

const LOCAL = '127.0.0.1'
const EXTERNAL = '93.184.216.34'
/** How long a test waits for a reply that should come at once, or for one that should never come. */
const PROMPT_MS = 2_000
const SILENCE_MS = 300

const SERVICES: Record<string, string[]> = {
  api: ['10.77.0.1', '10.77.0.2'],
  'api.shop': ['10.77.0.1', '10.77.0.2'],
  web: ['10.77.0.3'],
  many: Array.from({ length: 100 }, (_, i) => `10.78.0.${i + 1}`)
}

const lookups: Array<{ name: string, client: string }> = []
const lookup: DnsLookup = (name, client) => {
  lookups.push({ name, client })
  return SERVICES[name] ?? null
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function waitUntil (cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(2)
  }
}

function query (name: string, type: RecordType = 'A', id = 4242, edns?: number): Buffer {
  return encode({
    type: 'query',
    id,
    flags: RECURSION_DESIRED,
    questions: [{ type, class: 'IN', name }],
    additionals: edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: edns, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }]
  })
}

interface Reply {
  packet: DecodedPacket
  bytes: number
}

/** Sends one datagram from a fresh socket; the first reply, or null when none came within `timeoutMs`. */
function ask (port: number, msg: Buffer, timeoutMs = PROMPT_MS): Promise<Reply | null> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4')
    const timer = setTimeout(() => { sock.close(); resolve(null) }, timeoutMs)
    sock.on('error', (err) => { clearTimeout(timer); sock.close(); reject(err) })
    sock.on('message', (reply) => {
      clearTimeout(timer)
      sock.close()
      resolve({ packet: decode(reply), bytes: reply.length })
    })
    sock.send(msg, port, LOCAL)
  })
}

/** One query over TCP, two-byte length framing both ways. */
function askTcp (port: number, msg: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: LOCAL, port })
    let got = Buffer.alloc(0)
    sock.setTimeout(PROMPT_MS, () => { sock.destroy(); reject(new Error('TCP query timed out')) })
    sock.on('error', reject)
    sock.on('connect', () => {
      const len = Buffer.alloc(2)
      len.writeUInt16BE(msg.length)
      sock.write(Buffer.concat([len, msg]))
    })
    sock.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk])
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        const reply = got.subarray(2, 2 + got.readUInt16BE(0))
        sock.destroy()
        resolve({ packet: decode(reply), bytes: reply.length })
      }
    })
  })
}

function aRecords (r: Reply | null): string[] {
  return (r?.packet.answers ?? []).flatMap((a) => a.type === 'A' ? [a.data] : [])
}

function rcode (r: Reply | null): string | undefined {
  return (r?.packet as { rcode?: string } | undefined)?.rcode
}

/** A stand-in for the host's resolver, on UDP and TCP of one port; `replies` says what to send back to a query. */
interface FakeUpstream {
  port: number
  queries: DecodedPacket[]
  close: () => Promise<void>
}

function answerTo (q: DecodedPacket, address = EXTERNAL): Buffer {
  const question = q.questions?.[0]
  assert.ok(question !== undefined)
  return encode({
    type: 'response',
    id: q.id,
    flags: RECURSION_DESIRED | RECURSION_AVAILABLE,
    questions: [question],
    answers: [{ type: 'A', class: 'IN', name: question.name, ttl: 300, data: address }]
  })
}

/** Sockets and servers a test opened, closed after all tests even when one failed halfway. */
const opened: Array<() => void> = []

async function bindUdp (port = 0): Promise<UdpSocket> {
  const sock = createSocket('udp4')
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject)
    sock.bind(port, LOCAL, () => resolve())
  })
  opened.push(() => { try { sock.close() } catch { /* closed by the test */ } })
  return sock
}

async function fakeUpstream (replies: (q: DecodedPacket) => Buffer[] = (q) => [answerTo(q)]): Promise<FakeUpstream> {
  const queries: DecodedPacket[] = []
  for (;;) {
    const udp = await bindUdp()
    const port = udp.address().port
    const tcp: Server = createServer((sock) => {
      let got = Buffer.alloc(0)
      sock.on('error', () => {})
      sock.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk])
        if (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) return
        const q = decode(got.subarray(2, 2 + got.readUInt16BE(0)))
        queries.push(q)
        const reply = replies(q)[0]
        if (reply === undefined) return
        const len = Buffer.alloc(2)
        len.writeUInt16BE(reply.length)
        sock.end(Buffer.concat([len, reply]))
      })
    })
    const listening = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false))
      tcp.listen(port, LOCAL, () => resolve(true))
    })
    if (!listening) {
      udp.close()
      continue
    }
    opened.push(() => tcp.close())
    udp.on('message', (msg, from) => {
      const q = decode(msg)
      queries.push(q)
      for (const reply of replies(q)) udp.send(reply, from.port, from.address)
    })
    return {
      port,
      queries,
      close: async () => {
        udp.close()
        await new Promise<void>((resolve) => tcp.close(() => resolve()))
      }
    }
  }
}

/** A port nothing listens on (bound, then closed): an upstream that refuses at once. */
async function deadPort (): Promise<number> {
  const sock = await bindUdp()
  const port = sock.address().port
  await new Promise<void>((resolve) => sock.close(() => resolve()))
  return port
}

const started: DnsResponder[] = []

async function responder (upstreams: string[]): Promise<{ dns: DnsResponder, counters: Counters, port: number }> {
  const counters = new Counters()
  const dns = new DnsResponder({ host: LOCAL, port: 0, lookup, upstreams, logger: silentLogger(), counters })
  await dns.start()
  started.push(dns)
  return { dns, counters, port: dns.address().port }
}

after(async () => {
  await Promise.all(started.map((d) => d.stop()))
  for (const close of opened) close()
})

describe('DNS responder: service names', () => {
  let port = 0
  let counters: Counters
  before(async () => {
    ({ port, counters } = await responder([]))
  })

  it('answers a service name with its addresses, authoritatively, under the client id and a short TTL', async () => {
    lookups.length = 0
    const r = await ask(port, query('api', 'A', 4242))
    assert.ok(r !== null)
    assert.equal(r.packet.id, 4242)
    assert.equal(r.packet.type, 'response')
    assert.equal(rcode(r), 'NOERROR')
    assert.equal(r.packet.flag_aa, true)
    assert.equal(r.packet.flag_rd, true)
    assert.deepEqual(aRecords(r), ['10.77.0.1', '10.77.0.2'])
    assert.ok(r.packet.answers?.every((a) => a.name === 'api' && 'ttl' in a && a.ttl === ANSWER_TTL_SECONDS))
    assert.deepEqual(lookups, [{ name: 'api', client: LOCAL }])
    assert.equal(counters.get('mesh_dns_answers_total'), 1)
  })

  it('compares names case-insensitively, without a trailing dot, and echoes the name as asked', async () => {
    lookups.length = 0
    const r = await ask(port, query('API.Shop.', 'A', 7))
    assert.deepEqual(aRecords(r), ['10.77.0.1', '10.77.0.2'])
    assert.equal(r?.packet.questions?.[0]?.name, 'API.Shop')
    assert.equal(r?.packet.answers?.[0]?.name, 'API.Shop')
    assert.deepEqual(lookups.map((l) => l.name), ['api.shop'])
    assert.deepEqual(aRecords(await ask(port, query('WeB'))), ['10.77.0.3'])
    assert.equal(normalizeDnsName('API.Shop.'), 'api.shop')
  })

  it('answers AAAA and other types for a service name with NOERROR and no records', async () => {
    for (const type of ['AAAA', 'MX', 'TXT'] as const) {
      const r = await ask(port, query('api', type, 99))
      assert.equal(rcode(r), 'NOERROR', type)
      assert.equal(r?.packet.flag_aa, true, type)
      assert.equal(r?.packet.answers?.length, 0, type)
      assert.equal(r?.packet.id, 99, type)
    }
  })

  it('truncates a UDP answer to what the client takes (TC set) and gives all of it over TCP', async () => {
    const udp = await ask(port, query('many'))
    assert.ok(udp !== null)
    assert.equal(udp.packet.flag_tc, true)
    assert.ok(udp.bytes <= 512, `${udp.bytes} bytes`)
    assert.ok(aRecords(udp).length > 0 && aRecords(udp).length < 100)

    const edns = await ask(port, query('many', 'A', 1, 4096))
    assert.ok(edns !== null && edns.bytes > 512 && edns.bytes <= 1232, `${edns?.bytes} bytes`)
    assert.ok(edns.packet.additionals?.some((a) => a.type === 'OPT'))

    const tcp = await askTcp(port, query('many', 'A', 2))
    assert.equal(tcp.packet.flag_tc, false)
    assert.equal(tcp.packet.id, 2)
    assert.deepEqual(aRecords(tcp), SERVICES.many)
  })
})

describe('DNS responder: forwarding', () => {
  it('forwards a name it does not know and relays the answer under the client id', async () => {
    const upstream = await fakeUpstream()
    const { port, counters } = await responder([`${LOCAL}:${upstream.port}`])
    const r = await ask(port, query('Example.COM', 'A', 777))
    assert.ok(r !== null)
    assert.equal(r.packet.id, 777)
    assert.equal(rcode(r), 'NOERROR')
    assert.deepEqual(aRecords(r), [EXTERNAL])
    assert.equal(upstream.queries.length, 1)
    assert.equal(upstream.queries[0]?.questions?.[0]?.name, 'Example.COM')
    assert.equal(upstream.queries[0]?.flag_rd, true)
    assert.equal(counters.get('mesh_dns_forwarded_total'), 1)

    const tcp = await askTcp(port, query('example.org', 'A', 778))
    assert.equal(tcp.packet.id, 778)
    assert.deepEqual(aRecords(tcp), [EXTERNAL])
    assert.equal(upstream.queries.length, 2)
    await upstream.close()
  })

  it('moves on to the next upstream when one refuses', async () => {
    const upstream = await fakeUpstream()
    const { port, counters } = await responder([`${LOCAL}:${await deadPort()}`, `${LOCAL}:${upstream.port}`])
    const t0 = Date.now()
    const r = await ask(port, query('example.com', 'A', 5))
    assert.deepEqual(aRecords(r), [EXTERNAL])
    assert.ok(Date.now() - t0 < UPSTREAM_TIMEOUT_MS, 'a refusal does not wait for the timeout')
    assert.equal(counters.get('mesh_dns_upstream_failures_total'), 1)
    await upstream.close()
  })

  it('ignores an upstream message with another id and relays the real answer', async () => {
    const upstream = await fakeUpstream((q) => {
      const forged = answerTo(q, '6.6.6.6')
      forged.writeUInt16BE((forged.readUInt16BE(0) + 1) & 0xffff, 0)
      return [forged, answerTo(q)]
    })
    const { port, counters } = await responder([`${LOCAL}:${upstream.port}`])
    const r = await ask(port, query('example.com', 'A', 6))
    assert.equal(r?.packet.id, 6)
    assert.deepEqual(aRecords(r), [EXTERNAL])
    assert.equal(counters.get('mesh_dns_upstream_ignored_total'), 1)
    await upstream.close()
  })

  it('answers SERVFAIL when no upstream answers within the timeout', async () => {
    const silent = await bindUdp()
    silent.on('message', () => {})
    const { port, counters } = await responder([`${LOCAL}:${silent.address().port}`])
    const t0 = Date.now()
    const r = await ask(port, query('example.com', 'A', 8), UPSTREAM_TIMEOUT_MS + PROMPT_MS)
    const elapsed = Date.now() - t0
    assert.equal(rcode(r), 'SERVFAIL')
    assert.equal(r?.packet.id, 8)
    assert.equal(r?.packet.questions?.[0]?.name, 'example.com')
    assert.ok(elapsed >= UPSTREAM_TIMEOUT_MS - 50 && elapsed < UPSTREAM_TIMEOUT_MS + 1_000, `${elapsed} ms`)
    assert.equal(counters.get('mesh_dns_servfail_total'), 1)
    silent.close()
  })

  it('answers SERVFAIL at once when there are no upstreams', async () => {
    const { port } = await responder([])
    const r = await ask(port, query('example.com', 'A', 9, 1232))
    assert.equal(rcode(r), 'SERVFAIL')
    assert.equal(r?.packet.id, 9)
    assert.ok(r?.packet.additionals?.some((a) => a.type === 'OPT'))
  })

  it(`keeps at most ${MAX_FORWARDS_IN_FLIGHT} forwarded queries in flight, and stop() ends them`, async () => {
    const silent = await bindUdp()
    silent.on('message', () => {})
    const { dns, port, counters } = await responder([`${LOCAL}:${silent.address().port}`])
    const client = await bindUdp()
    const replies: Buffer[] = []
    client.on('message', (m) => replies.push(m))
    for (let i = 0; i <= MAX_FORWARDS_IN_FLIGHT; i++) {
      client.send(query(`n${i}.example.com`, 'A', i), port, LOCAL)
      // in one process, a burst larger than the socket's receive buffer would be lost before the responder reads it
      if (i % 32 === 31) await sleep(5)
    }
    await waitUntil(() => counters.get('mesh_dns_queries_total') === MAX_FORWARDS_IN_FLIGHT + 1, PROMPT_MS, 'all queries')
    assert.equal(counters.get('mesh_dns_forwarded_total'), MAX_FORWARDS_IN_FLIGHT)
    assert.equal(counters.get('mesh_dns_forwards_dropped_total'), 1)
    await dns.stop()
    await sleep(SILENCE_MS)
    assert.equal(replies.length, 0, 'no SERVFAIL is sent for queries cut short by stop()')
    client.close()
    silent.close()
  })
})

describe('DNS responder: bad packets', () => {
  let port = 0
  let counters: Counters
  before(async () => {
    ({ port, counters } = await responder([]))
  })

  it('drops and counts short, oversized and response packets, and queries with two questions', async () => {
    const before = counters.get('mesh_dns_malformed_total')
    const response = answerTo(decode(query('api')))
    const twoQuestions = encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'api' }, { type: 'A', name: 'web' }] })
    const oversized = Buffer.concat([query('api'), Buffer.alloc(MAX_QUERY_BYTES)])
    const compressed = Buffer.from(query('api'))
    compressed.writeUInt16BE(0xc000, 12) // the question's name as a pointer to the header
    for (const msg of [Buffer.from([1, 2, 3]), oversized, response, twoQuestions, compressed]) {
      assert.equal(await ask(port, msg, SILENCE_MS), null)
    }
    assert.equal(counters.get('mesh_dns_malformed_total') - before, 5)
    assert.equal(counters.get('mesh_dns_queries_total'), 0)
  })

  it('never crashes on random datagrams: each is dropped and counted, or answered as a query', async () => {
    const client = await bindUdp()
    client.on('message', () => {})
    const seen = (): number => counters.get('mesh_dns_malformed_total') + counters.get('mesh_dns_queries_total')
    const base = query('api', 'A', 1, 1232)
    const mutated = fc.tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat())
      .map(([edits, cut]) => {
        const b = Buffer.from(base)
        for (const [at, byte] of edits) b[at % b.length] = byte
        return b.subarray(0, cut % 3 === 0 ? cut % (b.length + 1) : b.length)
      })
    const packets = fc.oneof(
      fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
      fc.uint8Array({ minLength: 12, maxLength: 40 }).map((a) => Buffer.from(a)),
      mutated
    )
    await fc.assert(fc.asyncProperty(packets, async (msg) => {
      const n = seen()
      await new Promise<void>((resolve, reject) => client.send(msg, port, LOCAL, (err) => { if (err === null) resolve(); else reject(err) }))
      await waitUntil(() => seen() === n + 1, PROMPT_MS, 'the datagram to be counted')
    }), { numRuns: 500 })
    client.close()
    assert.ok(counters.get('mesh_dns_malformed_total') > 0)
    assert.equal(counters.get('mesh_dns_internal_errors_total'), 0)
    assert.deepEqual(aRecords(await ask(port, query('api'))), ['10.77.0.1', '10.77.0.2'])
  })

  it('closes a TCP connection that announces an oversized query', async () => {
    const before = counters.get('mesh_dns_malformed_total')
    await new Promise<void>((resolve, reject) => {
      const sock = connect({ host: LOCAL, port })
      sock.setTimeout(PROMPT_MS, () => reject(new Error('not closed')))
      sock.on('error', () => {})
      sock.on('connect', () => sock.write(Buffer.from([0xff, 0xff, 0, 0])))
      sock.on('close', () => resolve())
    })
    assert.equal(counters.get('mesh_dns_malformed_total') - before, 1)
  })
})

describe('upstream resolvers', () => {
  it('reads nameserver lines, skipping loopback resolvers, comments and duplicates', () => {
    const text = [
      '# Generated by NetworkManager',
      'search lan example.com',
      'nameserver 127.0.0.53',
      'nameserver 127.0.0.11',
      'nameserver 192.168.1.1 # the router',
      '; nameserver 10.9.9.9',
      '  nameserver\t1.1.1.1',
      'nameserver 1.1.1.1',
      'nameserver ::1',
      'nameserver 0.0.0.0',
      'nameserver 2606:4700:4700::1111',
      'nameserver fe80::1%eth0',
      'nameserver not-an-address',
      'options edns0 trust-ad',
      'nameserver'
    ].join('\n')
    assert.deepEqual(upstreamsFromResolvConf(text), ['192.168.1.1', '1.1.1.1', '2606:4700:4700::1111', 'fe80::1%eth0'])
    assert.deepEqual(upstreamsFromResolvConf(''), [])
  })

  it('reads /etc/resolv.conf, then systemd-resolved\'s list when the first has only loopback resolvers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'p2p-orch-dns-'))
    try {
      const stub = join(dir, 'stub.conf')
      const real = join(dir, 'real.conf')
      await writeFile(stub, 'nameserver 127.0.0.53\noptions edns0\n')
      await writeFile(real, 'nameserver 9.9.9.9\nnameserver 8.8.8.8\n')
      assert.deepEqual(await readUpstreams([real, stub]), ['9.9.9.9', '8.8.8.8'])
      assert.deepEqual(await readUpstreams([stub, real]), ['9.9.9.9', '8.8.8.8'])
      assert.deepEqual(await readUpstreams([join(dir, 'absent'), stub]), [])
      assert.ok(Array.isArray(await readUpstreams()))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('takes IP and IP:port upstreams and rejects anything else', () => {
    const make = (upstreams: string[]): DnsResponder =>
      new DnsResponder({ host: LOCAL, port: 0, lookup, upstreams, logger: silentLogger(), counters: new Counters() })
    make(['1.1.1.1', '1.1.1.1:5353', '2606:4700:4700::1111', '[::1]:5353', 'fe80::1%eth0'])
    for (const bad of ['dns.google', '1.1.1.1:', '1.1.1.1:70000', '[1.1.1.1]:53', '', '::1]:53']) {
      assert.throws(() => make([bad]), DnsUpstreamError, bad)
    }
  })
})
