/**
 * What guards the control API on TCP (`agent --api-listen`), kept in the data directory:
 *
 *   api.key    ECDSA P-256 private key of the API's TLS certificate (PKCS#8 PEM, 0600)
 *   api.crt    its self-signed certificate (PEM); made once, so its pin stays the same
 *   api.token  `p2porchapi1.<secret>.<pin>` (api/api-token.ts, 0600): the bearer secret and the
 *              certificate's SHA-256, all a remote CLI needs (P2P_ORCH_API_TOKEN)
 *
 * No CA is involved: the CLI checks the certificate against the pin in the token. `rotate()`
 * replaces the secret (file first, then the one in force), so the old token is refused at once;
 * the routes here serve `p2p-orch api-token [--rotate]`, on the control socket only.
 */
import { createPrivateKey, randomBytes, webcrypto, X509Certificate, KeyObject } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { API_SECRET_BYTES, decodeApiToken, encodeApiToken, pinOf } from './api/api-token.ts'
import type { ApiTokenResponse } from './api/types.ts'
import type { ControlServer } from './control.ts'
import { DataDirError, UserError } from './errors.ts'
import { FILES, writeFileAtomic } from './identity.ts'

/**
 * The certificate never has to be renewed: the CLI checks the pin, not the dates (a CA-less
 * certificate that expired would only make a new pin necessary). 100 years is "never".
 */
const CERT_VALIDITY_MS = 100 * 365 * 24 * 3600 * 1000

/** The key and certificate algorithm: ECDSA P-256, which every TLS stack and OpenSSL take. */
const CERT_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }

export interface ApiCertificate {
  keyPem: string
  certPem: string
  /** SHA-256 of the certificate's DER, lowercase hex: the pin remote CLIs check */
  pin: string
}

/** A new key pair and self-signed certificate. */
async function generateCertificate (subject: string): Promise<{ keyPem: string, certPem: string }> {
  // Node can make keys but not X.509 certificates. @peculiar/x509 builds one in pure JS over
  // WebCrypto (no native code, no install scripts); its dependency injection (tsyringe) needs the
  // Reflect metadata API, hence reflect-metadata first. Both load only here, when a data
  // directory gets its first certificate, never at an ordinary start.
  await import('reflect-metadata')
  const x509 = await import('@peculiar/x509')
  x509.cryptoProvider.set(webcrypto as unknown as Crypto)
  const keys = await webcrypto.subtle.generateKey(CERT_ALGORITHM, true, ['sign', 'verify']) as CryptoKeyPair
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(16).toString('hex').replace(/^[89a-f]/, '1'), // positive, as DER wants
    name: `CN=${subject.replace(/[,+="\\<>;#]/g, '_')}`,
    notBefore: new Date(now - 60_000), // a peer whose clock is a little behind still sees it valid
    notAfter: new Date(now + CERT_VALIDITY_MS),
    signingAlgorithm: CERT_ALGORITHM,
    keys
  })
  const keyPem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string
  return { keyPem, certPem: cert.toString('pem') + '\n' }
}

/** The data directory's API key and certificate, made on first use; a corrupt pair is an error. */
export async function loadApiCertificate (dir: string, subject: string): Promise<ApiCertificate & { created: boolean }> {
  const keyPath = join(dir, FILES.apiKey)
  const certPath = join(dir, FILES.apiCert)
  let created = false
  if (!existsSync(keyPath) || !existsSync(certPath)) {
    // half a pair is of no use: make both (remote CLIs need the new token, as with a first start)
    const made = await generateCertificate(subject)
    await writeFileAtomic(keyPath, made.keyPem, 0o600)
    await writeFileAtomic(certPath, made.certPem, 0o644)
    created = true
  }
  const keyPem = await readFile(keyPath, 'utf8')
  const certPem = await readFile(certPath, 'utf8')
  try {
    const cert = new X509Certificate(certPem)
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('the key is not the certificate\'s')
    return { keyPem, certPem, pin: pinOf(cert.fingerprint256), created }
  } catch (err) {
    throw new DataDirError(`${keyPath} / ${certPath} are unusable (${(err as Error).message}); delete both to make a new certificate (remote CLIs then need the new token: \`p2p-orch api-token\`)`)
  }
}

export class ApiAccess {
  readonly cert: ApiCertificate
  /** the URL remote CLIs pass to --api (the listen address as given) */
  readonly url: string
  private readonly tokenPath: string
  private current: string
  /** rotations run one at a time: each writes the file, then swaps the secret */
  private queue: Promise<unknown> = Promise.resolve()
  private readonly onRotate: () => void

  private constructor (cert: ApiCertificate, url: string, tokenPath: string, secret: string, onRotate: () => void) {
    this.cert = cert
    this.url = url
    this.tokenPath = tokenPath
    this.current = secret
    this.onRotate = onRotate
  }

  /**
   * The certificate and token of `dir`. An api.token for this certificate is kept; one for an
   * earlier certificate keeps its secret with the new pin; anything else (an older version's plain
   * token, sent in clear over HTTP) gives way to a new secret: `replaced` says so.
   */
  static async load (o: { dir: string, url: string, subject: string, onRotate?: () => void }): Promise<{ access: ApiAccess, replaced: boolean }> {
    const cert = await loadApiCertificate(o.dir, o.subject)
    const tokenPath = join(o.dir, FILES.apiToken)
    const text = existsSync(tokenPath) ? await readFile(tokenPath, 'utf8') : undefined
    const old = text === undefined ? null : decodeApiToken(text)
    const secret = old?.secret ?? newSecret()
    if (old === null || old.pin !== cert.pin) await writeFileAtomic(tokenPath, encodeApiToken({ secret, pin: cert.pin }) + '\n', 0o600)
    return { access: new ApiAccess(cert, o.url, tokenPath, secret, o.onRotate ?? (() => {})), replaced: text !== undefined && old === null }
  }

  /** the bearer secret in force */
  secret (): string {
    return this.current
  }

  /** the token remote CLIs need (the content of api.token) */
  token (): string {
    return encodeApiToken({ secret: this.current, pin: this.cert.pin })
  }

  /** A new secret: written to api.token, then in force; the old one is refused from then on. */
  async rotate (): Promise<string> {
    const run = this.queue.then(async () => {
      const secret = newSecret()
      await writeFileAtomic(this.tokenPath, encodeApiToken({ secret, pin: this.cert.pin }) + '\n', 0o600)
      this.current = secret
      this.onRotate()
      return this.token()
    })
    this.queue = run.catch(() => {})
    return await run
  }
}

function newSecret (): string {
  return randomBytes(API_SECRET_BYTES).toString('base64url')
}

/**
 * `GET /api-token` and `POST /api-token/rotate`, on the control socket only: whoever can use the
 * socket can read api.token anyway, and a TCP caller must not lock everyone else out.
 */
export function registerApiTokenRoutes (control: ControlServer, access: ApiAccess | null): void {
  const need = (): ApiAccess => {
    if (access === null) throw new UserError('this agent serves no control API on TCP: start it with --api-listen HOST:PORT')
    return access
  }
  const view = (a: ApiAccess, rotated: boolean): ApiTokenResponse => ({ token: a.token(), url: a.url, pin: a.cert.pin, rotated })
  control.route('GET', '/api-token', () => view(need(), false), { localOnly: true })
  control.route('POST', '/api-token/rotate', async () => {
    const a = need()
    await a.rotate()
    return view(a, true)
  }, { localOnly: true })
}
