/**
 * Output helpers: aligned tables, human ages and sizes.
 */

export function table (headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join('   ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

export function age (sinceMs: number, now = Date.now()): string {
  if (sinceMs <= 0) return '-'
  const s = Math.max(0, Math.floor((now - sinceMs) / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}

export function bytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`
}

export function shortId (id: string): string {
  return id.length > 12 ? id.slice(-12) : id
}

export function labels (l: Record<string, string>): string {
  const s = Object.entries(l).map(([k, v]) => `${k}=${v}`).join(',')
  return s.length > 0 ? s : '-'
}
