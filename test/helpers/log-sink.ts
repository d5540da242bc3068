/** A pino destination that keeps every log record as parsed JSON (pino's own test `sink()` idea). */
import { Writable } from 'node:stream'
import { pino } from 'pino'
import type { Log } from '../../src/logger.js'

export type LogRecord = Record<string, unknown> & { msg?: string; level?: number }

export function logSink(): { log: Log; records: LogRecord[] } {
  const records: LogRecord[] = []
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() === '') continue
        records.push(JSON.parse(line) as LogRecord) // pino writes one JSON object per line
      }
      cb()
    },
  })
  const log = pino({ level: process.env['TEST_LOG_LEVEL'] ?? 'debug' }, dest)
  return { log, records }
}

/** The per-request Git log lines (DESIGN §9). */
export function gitRequestLines(records: LogRecord[]): LogRecord[] {
  return records.filter((r) => r.msg === 'git request')
}
