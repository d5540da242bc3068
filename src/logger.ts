import type { Logger } from 'pino'

/** The logger every component receives. Children are made with `log.child({ component })`. */
export type Log = Logger
