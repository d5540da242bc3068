/** The bench's progress lines (time-stamped) and its one sleep. */
export const log = (s: string): void => { console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`) }
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
