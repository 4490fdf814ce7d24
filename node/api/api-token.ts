/**
 * The TCP control API's token: what a remote CLI needs to reach a node over HTTPS, in one string
 * (the content of `<data>/api.token`, given to the CLI as P2P_ORCH_API_TOKEN):
 *
 *   p2porchapi1.<secret>.<pin>
 *
 * `secret` is the bearer secret (base64url); `pin` is the SHA-256 of the node's self-signed TLS
 * certificate (DER), lowercase hex. The CLI sends `Authorization: Bearer <secret>` only after the
 * certificate the node presents hashes to `pin`: the pin replaces a CA. Pure, shared by the agent
 * and the CLI.
 */

export const API_TOKEN_PREFIX = 'p2porchapi1'

/** Random bytes in a new secret: 256 bits, beyond any guessing over the network. */
export const API_SECRET_BYTES = 32

export interface ApiToken {
  secret: string
  /** SHA-256 of the server certificate's DER, 64 lowercase hex digits */
  pin: string
}

/** A secret is base64url; 16..128 characters keeps out both typos and absurd input. */
const SECRET_PATTERN = /^[A-Za-z0-9_-]{16,128}$/
const PIN_PATTERN = /^[0-9a-f]{64}$/

export function encodeApiToken (t: ApiToken): string {
  return `${API_TOKEN_PREFIX}.${t.secret}.${t.pin}`
}

/** The token in `text` (surrounding whitespace ignored), or null when it is not one. */
export function decodeApiToken (text: string): ApiToken | null {
  const parts = text.trim().split('.')
  if (parts.length !== 3 || parts[0] !== API_TOKEN_PREFIX) return null
  const [, secret, pin] = parts
  if (!SECRET_PATTERN.test(secret) || !PIN_PATTERN.test(pin)) return null
  return { secret, pin }
}

/** A certificate fingerprint as Node prints it (`AB:CD:…`) or as hex, normalised to a pin. */
export function pinOf (fingerprint: string): string {
  return fingerprint.replace(/:/g, '').toLowerCase()
}
