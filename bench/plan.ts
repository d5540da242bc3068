/** What a bench run does: the scenarios, their sizes, parsed from the command line. */
import type { RepoName } from './generate.js'

export const SCENARIOS = ['burst', 'floor', 'passthrough', 'polling', 'mixed', 'fetch', 'lfs'] as const
export type Scenario = (typeof SCENARIOS)[number]
export type Target = 'direct' | 'proxy'
export type Mode = 'full' | 'checkout'

export interface Plan {
  quick: boolean
  scenarios: Set<Scenario>
  reps: number
  /** Burst matrix: repository, concurrencies, protocols, modes. */
  bursts: { repo: RepoName; ns: number[]; protos: number[]; modes: Mode[]; reps: number }[]
  floorRepo: RepoName
  floorReps: number
  passReps: number
  pollSeconds: number
  pollConcurrency: number[]
  refsTtl: number
  mixedSeconds: number
  /** Incremental fetches (bench/scenarios/fetch.ts): repository, workspaces per burst, protocols, repetitions. */
  fetchRepo: RepoName
  fetchN: number
  fetchProtos: number[]
  fetchReps: number
  /** Git LFS burst: MB of LFS objects in the repository, how many objects, concurrent clones, repetitions. */
  lfsMb: number
  lfsObjects: number
  lfsClients: number
  lfsReps: number
  /** Run the proxy and upstream from this git revision's src/ (a snapshot) instead of the working tree. */
  proxyRev: string | null
}

export function parsePlan(argv: string[]): Plan {
  const quick = argv.includes('--quick')
  const arg = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
  const reps = Number(arg('reps') ?? (quick ? 2 : 3))
  const wanted = arg('scenarios')?.split(',') ?? SCENARIOS.filter((s) => !(quick && s === 'mixed'))
  for (const s of wanted) if (!SCENARIOS.includes(s as Scenario)) throw new Error(`unknown scenario ${s}; one of ${SCENARIOS.join(', ')}`)
  // --burst=<repo>:<n,...>:<proto,...>:<mode,...>, e.g. --burst=medium:64:2:full, replaces the burst matrix.
  const custom = arg('burst')?.split(':')
  const customBursts: Plan['bursts'] | null = custom === undefined
    ? null
    : [{
        repo: (custom[0] ?? 'small') as RepoName,
        ns: (custom[1] ?? '8').split(',').map(Number),
        protos: (custom[2] ?? '2').split(',').map(Number),
        modes: (custom[3] ?? 'full').split(',') as Mode[],
        reps,
      }]
  return {
    quick,
    scenarios: new Set(wanted as Scenario[]),
    reps,
    bursts: customBursts ?? (quick
      ? [
          { repo: 'small', ns: [8, 32], protos: [2, 0], modes: ['full', 'checkout'], reps },
          { repo: 'medium', ns: [32], protos: [2], modes: ['full'], reps: 1 },
        ]
      : [
          { repo: 'small', ns: [8, 32, 64], protos: [2, 0], modes: ['full', 'checkout'], reps },
          { repo: 'medium', ns: [8, 32, 64], protos: [2, 0], modes: ['full', 'checkout'], reps },
        ]),
    floorRepo: 'medium',
    floorReps: quick ? 3 : 7,
    passReps: quick ? 5 : 11,
    pollSeconds: quick ? 3 : 10,
    pollConcurrency: quick ? [4, 32] : [4, 32, 128],
    refsTtl: quick ? 2 : 5,
    mixedSeconds: Number(arg('mixed-seconds') ?? 120),
    // --fetch=<repo>:<n>, e.g. --fetch=small:8 for a short run; default 32 workspaces of medium (small with --quick).
    fetchRepo: (arg('fetch')?.split(':')[0] ?? (quick ? 'small' : 'medium')) as RepoName,
    fetchN: Number(arg('fetch')?.split(':')[1] ?? 32),
    fetchProtos: [2, 0],
    fetchReps: Number(arg('fetch-reps') ?? (quick ? 1 : 3)),
    proxyRev: arg('proxy-rev') ?? null,
    lfsMb: Number(arg('lfs-mb') ?? (quick ? 50 : 200)),
    lfsObjects: Number(arg('lfs-objects') ?? 20),
    lfsClients: Number(arg('lfs-clients') ?? 16),
    lfsReps: Number(arg('lfs-reps') ?? (quick ? 1 : reps)),
  }
}

