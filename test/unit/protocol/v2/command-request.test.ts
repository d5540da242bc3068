import t from 'tap'
import {
  parseCommandRequestV2,
  parseFetchArgsV2,
  parseLsRefsArgsV2,
  serverOptions,
} from '../../../../src/protocol/v2/command-request.js'
import type {
  FetchArgsV2,
  LsRefsArgsV2,
} from '../../../../src/protocol/v2/command-request.js'
import {
  DELIM,
  FLUSH,
  fixture,
  pkt,
  repo,
  splitAfterFlush,
} from '../fixtures/transcripts.js'

const http = (name: string): Buffer =>
  fixture(`http-${name}-git-upload-pack.req.bin`)
const CAPS = ['agent=git/2.39.5', 'object-format=sha1']

const NO_ARGS: FetchArgsV2 = {
  wants: [],
  haves: [],
  shallows: [],
  deepen: null,
  deepenSince: null,
  deepenNot: [],
  deepenRelative: false,
  filter: null,
  wantRefs: [],
  done: false,
  thinPack: false,
  ofsDelta: false,
  noProgress: false,
  includeTag: false,
  sidebandAll: false,
  waitForDone: false,
  packfileUris: null,
  unknown: [],
}
const CLONE_ARGS: FetchArgsV2 = {
  ...NO_ARGS,
  thinPack: true,
  ofsDelta: true,
  done: true,
}

void t.test('ls-refs requests real git sent', (t) => {
  const standard = ['HEAD', 'refs/heads/', 'refs/tags/']
  const cases: { name: string; body: Buffer; args: LsRefsArgsV2 }[] = [
    {
      name: 'clone',
      body: http('v2-clone/02'),
      args: {
        symrefs: true,
        peel: true,
        unborn: true,
        refPrefixes: standard,
        unknown: [],
      },
    },
    {
      name: 'clone --single-branch --branch feature',
      body: http('v2-branch/02'),
      args: {
        symrefs: true,
        peel: true,
        unborn: true,
        refPrefixes: [
          'HEAD',
          'refs/heads/',
          'feature',
          'refs/feature',
          'refs/tags/feature',
          'refs/heads/feature',
          'refs/remotes/feature',
          'refs/remotes/feature/HEAD',
          'refs/tags/',
        ],
        unknown: [],
      },
    },
    {
      name: 'clone --mirror',
      body: http('v2-mirror/02'),
      args: {
        symrefs: true,
        peel: true,
        unborn: true,
        refPrefixes: ['HEAD', 'refs/', 'refs/tags/'],
        unknown: [],
      },
    },
    {
      name: 'ls-remote: no prefix at all',
      body: http('v2-lsremote/02'),
      args: {
        symrefs: true,
        peel: true,
        unborn: true,
        refPrefixes: [],
        unknown: [],
      },
    },
    {
      name: 'CI fetch by id (with tags): no prefix either',
      body: http('v2-ci/02'),
      args: {
        symrefs: true,
        peel: true,
        unborn: true,
        refPrefixes: [],
        unknown: [],
      },
    },
    {
      name: 'over ssh',
      body: splitAfterFlush(fixture('ssh-v2-clone/in.bin'), 1)[0],
      args: {
        symrefs: true,
        peel: true,
        unborn: true,
        refPrefixes: standard,
        unknown: [],
      },
    },
  ]
  for (const c of cases) {
    const req = parseCommandRequestV2(c.body)
    t.strictSame(req?.command, 'ls-refs', `${c.name}: command`)
    t.strictSame(req?.capabilities, CAPS, `${c.name}: capabilities`)
    t.strictSame(parseLsRefsArgsV2(req?.args ?? []), c.args, `${c.name}: args`)
  }
  t.end()
})

void t.test('fetch requests real git sent', (t) => {
  const cloneWants = [repo.main, repo.feature, repo.main, repo.tagV02]
  const cases: {
    name: string
    body: Buffer
    caps?: string[]
    args: FetchArgsV2
  }[] = [
    {
      name: 'clone (--progress)',
      body: http('v2-clone/03'),
      args: { ...CLONE_ARGS, wants: cloneWants },
    },
    {
      name: 'clone --mirror',
      body: http('v2-mirror/03'),
      args: { ...CLONE_ARGS, noProgress: true, wants: cloneWants },
    },
    {
      name: 'depth 1 (--progress)',
      body: http('v2-depth1/03'),
      args: {
        ...CLONE_ARGS,
        includeTag: true,
        deepen: 1,
        wants: [repo.main, repo.main],
      },
    },
    {
      name: 'shallow-since',
      body: http('v2-since/03'),
      args: {
        ...CLONE_ARGS,
        noProgress: true,
        includeTag: true,
        deepenSince: 1704326400,
        wants: [repo.main, repo.main],
      },
    },
    {
      name: 'filter',
      body: http('v2-filter/03'),
      args: {
        ...CLONE_ARGS,
        noProgress: true,
        filter: 'blob:none',
        wants: cloneWants,
      },
    },
    {
      name: 'single branch',
      body: http('v2-branch/03'),
      args: {
        ...CLONE_ARGS,
        noProgress: true,
        includeTag: true,
        wants: [repo.feature],
      },
    },
    {
      name: 'fetch with haves, no done',
      body: http('v2-fetch/03'),
      args: {
        ...CLONE_ARGS,
        done: false,
        noProgress: true,
        wants: [repo.nextMain],
        haves: [repo.main, repo.mainParent, repo.feature, repo.tagV02Peeled],
      },
    },
    {
      name: 'CI fetch by id',
      body: http('v2-ci/03'),
      args: {
        ...CLONE_ARGS,
        noProgress: true,
        includeTag: true,
        deepen: 1,
        wants: [repo.main],
      },
    },
    {
      name: 'CI fetch by id, --no-tags',
      body: http('v2-ci-notags/02'),
      args: { ...CLONE_ARGS, noProgress: true, deepen: 1, wants: [repo.main] },
    },
    {
      name: 'ref-in-want + sideband-all advertised',
      body: http('v2-features/03'),
      args: {
        ...CLONE_ARGS,
        noProgress: true,
        sidebandAll: true,
        wantRefs: [
          'HEAD',
          'refs/heads/feature',
          'refs/heads/main',
          'refs/tags/v0.2',
        ],
      },
    },
    {
      name: 'sha256 over ssh',
      body: splitAfterFlush(fixture('ssh-v2-sha256-clone/in.bin'), 1)[1],
      caps: ['agent=git/2.39.5', 'object-format=sha256'],
      args: {
        ...CLONE_ARGS,
        noProgress: true,
        wants: [
          repo.sha256Main,
          repo.sha256Feature,
          repo.sha256Main,
          repo.sha256TagV02,
        ],
      },
    },
  ]
  for (const c of cases) {
    const req = parseCommandRequestV2(c.body)
    t.strictSame(req?.command, 'fetch', `${c.name}: command`)
    t.strictSame(req?.capabilities, c.caps ?? CAPS, `${c.name}: capabilities`)
    t.strictSame(parseFetchArgsV2(req?.args ?? []), c.args, `${c.name}: args`)
  }
  t.end()
})

void t.test('end of session', (t) => {
  t.equal(parseCommandRequestV2(Buffer.alloc(0)), null, 'empty body')
  t.equal(parseCommandRequestV2(FLUSH), null, 'lone flush')
  // ls-remote over ssh: one ls-refs request, then a lone flush
  const [first, rest] = splitAfterFlush(fixture('ssh-v2-lsremote/in.bin'), 1)
  t.equal(parseCommandRequestV2(first)?.command, 'ls-refs')
  t.equal(
    parseCommandRequestV2(rest),
    null,
    'the lone flush that ends the ssh session',
  )
  t.end()
})

void t.test('hand-made requests', (t) => {
  const cases: {
    name: string
    body: Buffer
    want: ReturnType<typeof parseCommandRequestV2>
  }[] = [
    {
      name: 'no delim, no args',
      body: Buffer.concat([pkt('command=ls-refs\n'), FLUSH]),
      want: { command: 'ls-refs', capabilities: [], args: [] },
    },
    {
      name: 'delim, no args',
      body: Buffer.concat([pkt('command=fetch'), DELIM, FLUSH]),
      want: { command: 'fetch', capabilities: [], args: [] },
    },
    {
      name: 'command= after other capabilities, server options',
      body: Buffer.concat([
        pkt('agent=x\n'),
        pkt('server-option=a b\n'),
        pkt('command=ls-refs\n'),
        pkt('server-option=c=d'),
        DELIM,
        pkt('peel\n'),
        pkt('command=x\n'),
        FLUSH,
      ]),
      want: {
        command: 'ls-refs',
        capabilities: ['agent=x', 'server-option=a b', 'server-option=c=d'],
        args: ['peel', 'command=x'],
      },
    },
    {
      name: 'only capabilities',
      body: Buffer.concat([
        pkt('command=object-info'),
        pkt('object-format=sha1'),
        FLUSH,
      ]),
      want: {
        command: 'object-info',
        capabilities: ['object-format=sha1'],
        args: [],
      },
    },
  ]
  for (const c of cases)
    t.strictSame(parseCommandRequestV2(c.body), c.want, c.name)
  t.strictSame(
    serverOptions([
      'agent=x',
      'server-option=a b',
      'server-option=',
      'server-option',
      'server-option=c=d',
    ]),
    ['a b', '', 'c=d'],
  )
  t.end()
})

void t.test('malformed command requests', (t) => {
  const cmd = pkt('command=ls-refs\n') // 20 bytes
  const cases: {
    name: string
    body: Buffer
    code?: string
    message: RegExp
    offset?: number
  }[] = [
    {
      name: 'no command',
      body: Buffer.concat([pkt('agent=x\n'), DELIM, pkt('peel\n'), FLUSH]),
      message: /request without command=/,
    },
    {
      name: 'only a delim',
      body: Buffer.concat([DELIM, FLUSH]),
      message: /request without command=/,
    },
    {
      name: 'two commands',
      body: Buffer.concat([cmd, pkt('command=fetch\n'), FLUSH]),
      message: /second command "command=fetch" at offset 20/,
      offset: 20,
    },
    {
      name: 'empty command',
      body: Buffer.concat([pkt('command=\n'), FLUSH]),
      message: /empty command at offset 0/,
    },
    {
      name: 'two delims',
      body: Buffer.concat([cmd, DELIM, DELIM, FLUSH]),
      message: /second delim packet at offset 24/,
    },
    {
      name: 'response-end',
      body: Buffer.concat([cmd, Buffer.from('0002'), FLUSH]),
      message: /unexpected response-end packet at offset 20/,
    },
    {
      name: 'empty line',
      body: Buffer.concat([cmd, DELIM, pkt('\n'), FLUSH]),
      message: /empty line at offset 24/,
    },
    {
      name: '0004',
      body: Buffer.concat([cmd, Buffer.from('0004'), FLUSH]),
      message: /empty line/,
    },
    {
      name: 'data after the final flush',
      body: Buffer.concat([cmd, FLUSH, pkt('command=fetch\n'), FLUSH]),
      message: /data after the final flush at offset 24/,
    },
    {
      name: 'second flush',
      body: Buffer.concat([cmd, FLUSH, FLUSH]),
      message: /data after the final flush/,
    },
    {
      name: 'lone flush then more',
      body: Buffer.concat([FLUSH, cmd, FLUSH]),
      message: /data after the final flush at offset 4/,
    },
    {
      name: 'two requests in one body (ssh stream)',
      body: fixture('ssh-v2-clone/in.bin'),
      message: /data after the final flush at offset 175/,
    },
    {
      name: 'no final flush',
      body: Buffer.concat([cmd, DELIM, pkt('peel\n')]),
      code: 'ERR_PROTOCOL_TRUNCATED',
      message: /does not end with a flush/,
    },
    {
      name: 'no final flush, command only',
      body: cmd,
      code: 'ERR_PROTOCOL_TRUNCATED',
      message: /does not end with a flush/,
    },
    {
      name: 'truncated packet',
      body: Buffer.concat([cmd, Buffer.from('0010pee')]),
      code: 'ERR_PROTOCOL_TRUNCATED',
      message: /inside a pkt-line at offset 20/,
    },
    {
      name: 'bad length',
      body: Buffer.concat([cmd, Buffer.from('PACK')]),
      code: 'ERR_PROTOCOL_BAD_LENGTH',
      message: /invalid pkt-line length "PACK" at offset 20/,
    },
  ]
  for (const c of cases) {
    const wanted = {
      name: 'ProtocolError',
      code: c.code ?? 'ERR_PROTOCOL_BAD_REQUEST',
      message: c.message,
      ...(c.offset === undefined ? {} : { offset: c.offset }),
    }
    t.throws(() => parseCommandRequestV2(c.body), wanted, c.name)
  }
  t.end()
})

void t.test('fetch arguments, hand-made', (t) => {
  const sha256 = 'cd'.repeat(32)
  const args = [
    `want ${repo.main}`,
    `want ${sha256}`,
    `have ${repo.first}`,
    `shallow ${repo.mainParent}`,
    'deepen-since 0',
    'deepen-not refs/tags/v0.2',
    'deepen-not main',
    'deepen-relative',
    'filter combine:blob:none+tree:2',
    'want-ref refs/heads/main',
    'thin-pack',
    'ofs-delta',
    'no-progress',
    'include-tag',
    'sideband-all',
    'wait-for-done',
    'packfile-uris https,http',
    'done',
    'frobnicate',
    'future-arg with value',
    'want',
  ]
  t.strictSame(parseFetchArgsV2(args), {
    wants: [repo.main, sha256],
    haves: [repo.first],
    shallows: [repo.mainParent],
    deepen: null,
    deepenSince: 0,
    deepenNot: ['refs/tags/v0.2', 'main'],
    deepenRelative: true,
    filter: 'combine:blob:none+tree:2',
    wantRefs: ['refs/heads/main'],
    done: true,
    thinPack: true,
    ofsDelta: true,
    noProgress: true,
    includeTag: true,
    sidebandAll: true,
    waitForDone: true,
    packfileUris: 'https,http',
    unknown: ['frobnicate', 'future-arg with value', 'want'],
  })
  t.strictSame(parseFetchArgsV2([]), NO_ARGS)
  t.strictSame(
    parseFetchArgsV2(['deepen 2147483647']).deepen,
    2147483647,
    '--unshallow depth',
  )
  t.end()
})

void t.test('malformed fetch arguments', (t) => {
  const cases: { name: string; args: string[]; message: RegExp }[] = [
    {
      name: 'short want',
      args: ['want 1234'],
      message: /bad object id: "want 1234"/,
    },
    {
      name: 'upper-case want',
      args: [`want ${repo.main.toUpperCase()}`],
      message: /bad object id/,
    },
    {
      name: 'want with trailing words',
      args: [`want ${repo.main} x`],
      message: /bad object id/,
    },
    {
      name: 'bad have',
      args: ['have zz'],
      message: /bad object id: "have zz"/,
    },
    { name: 'bad shallow', args: ['shallow '], message: /bad object id/ },
    { name: 'deepen 0', args: ['deepen 0'], message: /bad depth: "deepen 0"/ },
    { name: 'deepen 010', args: ['deepen 010'], message: /bad depth/ },
    { name: 'deepen 2^31', args: ['deepen 2147483648'], message: /bad depth/ },
    {
      name: 'deepen-since -1',
      args: ['deepen-since -1'],
      message: /bad timestamp/,
    },
    {
      name: 'deepen-since 1e9',
      args: ['deepen-since 1e9'],
      message: /bad timestamp/,
    },
    {
      name: 'empty deepen-not',
      args: ['deepen-not '],
      message: /empty deepen-not/,
    },
    { name: 'empty filter', args: ['filter '], message: /empty filter/ },
    {
      name: 'second filter',
      args: ['filter blob:none', 'filter blob:limit=0'],
      message: /second filter: "filter blob:limit=0"/,
    },
    { name: 'empty want-ref', args: ['want-ref '], message: /empty want-ref/ },
    {
      name: 'deepen with deepen-since',
      args: ['deepen 1', 'deepen-since 5'],
      message: /cannot be used together/,
    },
    {
      name: 'deepen with deepen-not',
      args: ['deepen-not v1', 'deepen 1'],
      message: /cannot be used together/,
    },
    {
      name: 'long line cut to 100 characters',
      args: [`want ${'f'.repeat(200)}`],
      message: new RegExp(`"want ${'f'.repeat(95)}…"$`),
    },
  ]
  for (const c of cases) {
    t.throws(
      () => parseFetchArgsV2(c.args),
      {
        name: 'ProtocolError',
        code: 'ERR_PROTOCOL_BAD_REQUEST',
        message: c.message,
      },
      c.name,
    )
  }
  t.end()
})

void t.test('ls-refs arguments, hand-made', (t) => {
  t.strictSame(
    parseLsRefsArgsV2([
      'ref-prefix ',
      'ref-prefix refs/a b',
      'peel',
      'symrefs',
      'unborn',
      'ref-prefix',
      'extra',
    ]),
    {
      symrefs: true,
      peel: true,
      unborn: true,
      refPrefixes: ['', 'refs/a b'],
      unknown: ['ref-prefix', 'extra'],
    },
  )
  t.strictSame(parseLsRefsArgsV2([]), {
    symrefs: false,
    peel: false,
    unborn: false,
    refPrefixes: [],
    unknown: [],
  })
  t.end()
})
