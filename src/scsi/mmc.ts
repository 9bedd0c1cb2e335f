/**
 * MMC-5 commands of a 'cd' LU (a read-only CD/DVD device backed by an image file, tgt's "cd" device type):
 * GET CONFIGURATION, READ TOC/PMA/ATIP, GET EVENT STATUS NOTIFICATION, READ DISC INFORMATION, and the MMC
 * mode pages. READ, READ CAPACITY, INQUIRY and the medium commands are shared with the disk (sbc.ts,
 * inquiry.ts, medium.ts); the table is mmc-commands.ts.
 *
 * The image is presented as one finalized single-session disc with one data track starting at LBA 0, the
 * way a pressed DVD-ROM looks: what Linux's sr driver and the ISO 9660 / UDF readers need to mount it.
 */
import type { LogicalUnit } from './lu';
import { UA } from './lu-shared';
import { invalidFieldInCdb } from './sense';
import { clip } from './spc';
import type { CommandContext, ModePage, ScsiResult } from './types';
import { PC_CHANGEABLE, modePage } from './types';

// ---- GET CONFIGURATION ------------------------------------------------------------------------------------

const PROFILE_NONE = 0x0000;
const PROFILE_CD_ROM = 0x0008;
const PROFILE_DVD_ROM = 0x0010;

/** Tray loading mechanism (001b) with Eject and Lock, as both the Removable Medium feature and page 2Ah say. */
const LOADING_TRAY = 0x20;
const EJECT = 0x08;
const LOCK = 0x01;

interface Feature {
  code: number;
  version: number;
  persistent: boolean;
  /** Whether the feature is current (in effect) now. */
  current(lu: LogicalUnit): boolean;
  data(lu: LogicalUnit): Buffer;
}

const always = () => true;
const withMedium = (lu: LogicalUnit) => lu.mediumPresent;

function profileDescriptor(profile: number, current: boolean): Buffer {
  const d = Buffer.alloc(4);
  d.writeUInt16BE(profile, 0);
  d[2] = current ? 0x01 : 0x00; // CURRENTP
  return d;
}

const FEATURES: readonly Feature[] = [
  {
    code: 0x0000, // Profile List: what the drive could be; DVD-ROM is current while a medium is loaded
    version: 0,
    persistent: true,
    current: always,
    data: (lu) =>
      Buffer.concat([
        profileDescriptor(PROFILE_DVD_ROM, lu.mediumPresent),
        profileDescriptor(PROFILE_CD_ROM, false),
      ]),
  },
  {
    code: 0x0001, // Core: physical interface 1 (SCSI family); no Device Busy events, INQ2 = 0
    version: 2,
    persistent: true,
    current: always,
    data: () => Buffer.from([0, 0, 0, 0x01, 0, 0, 0, 0]),
  },
  {
    code: 0x0002, // Morphing: events are polled (ASYNC = 0), no operational change events
    version: 1,
    persistent: true,
    current: always,
    data: () => Buffer.alloc(4),
  },
  {
    code: 0x0003, // Removable Medium
    version: 0,
    persistent: true,
    current: always,
    data: () => Buffer.from([LOADING_TRAY | EJECT | LOCK, 0, 0, 0]),
  },
  {
    code: 0x0010, // Random Readable: 2048-byte blocks, blocking 1, no page present bit
    version: 0,
    persistent: false,
    current: withMedium,
    data: (lu) => {
      const d = Buffer.alloc(8);
      d.writeUInt32BE(lu.blockSize, 0);
      d.writeUInt16BE(1, 4);
      return d;
    },
  },
];

function featureDescriptor(f: Feature, lu: LogicalUnit): Buffer {
  const data = f.data(lu);
  const d = Buffer.alloc(4 + data.length);
  d.writeUInt16BE(f.code, 0);
  d[2] = (f.version << 2) | (f.persistent ? 0x02 : 0) | (f.current(lu) ? 0x01 : 0);
  d[3] = data.length;
  data.copy(d, 4);
  return d;
}

/** RT 00b: every feature from STARTING FEATURE NUMBER on; 01b: the current ones; 10b: that one feature. */
export function getConfiguration(ctx: CommandContext): ScsiResult {
  const { cdb, lu } = ctx;
  const rt = cdb[1] & 0x03;
  const start = cdb.readUInt16BE(2);
  const alloc = cdb.readUInt16BE(7);
  let chosen: readonly Feature[];
  if (rt === 0) chosen = FEATURES.filter((f) => f.code >= start);
  else if (rt === 1) chosen = FEATURES.filter((f) => f.code >= start && f.current(lu));
  else if (rt === 2) chosen = FEATURES.filter((f) => f.code === start);
  else throw invalidFieldInCdb(1, 1);
  const header = Buffer.alloc(8);
  header.writeUInt16BE(lu.mediumPresent ? PROFILE_DVD_ROM : PROFILE_NONE, 6);
  const data = Buffer.concat([header, ...chosen.map((f) => featureDescriptor(f, lu))]);
  data.writeUInt32BE(data.length - 4, 0);
  return clip(data, alloc);
}

// ---- READ TOC/PMA/ATIP --------------------------------------------------------------------------------------

const DATA_TRACK = 0x14; // ADR 1 (Q sub-channel position), CONTROL 4 (data track, recorded uninterrupted)
const LEAD_OUT = 0xaa;

/** A block address as READ TOC reports it: an LBA, or with MSF = 1 minutes/seconds/frames after 2 s of pregap. */
function address(lba: number, msf: boolean): Buffer {
  const b = Buffer.alloc(4);
  if (!msf) {
    b.writeUInt32BE(lba, 0);
    return b;
  }
  const frames = lba + 150;
  const m = Math.floor(frames / (60 * 75));
  // Past 99:59:74 the minute field cannot hold it; MMC leaves such discs to LBA addressing.
  b[1] = Math.min(m, 0xff);
  b[2] = Math.floor(frames / 75) % 60;
  b[3] = frames % 75;
  return b;
}

function trackDescriptor(track: number, lba: number, msf: boolean): Buffer {
  const d = Buffer.alloc(8);
  d[1] = DATA_TRACK;
  d[2] = track;
  address(lba, msf).copy(d, 4);
  return d;
}

/** Format 0 (TOC: track 1 and the lead-out) and 1 (session information: one session starting at track 1). */
export function readToc(ctx: CommandContext): ScsiResult {
  const { cdb, lu } = ctx;
  const msf = (cdb[1] & 0x02) !== 0;
  const format = cdb[2] & 0x0f;
  const track = cdb[6];
  const alloc = cdb.readUInt16BE(7);
  let descriptors: Buffer[];
  if (format === 0) {
    // Descriptors for the tracks numbered TRACK/SESSION NUMBER and up, then the lead-out.
    if (track > 1 && track !== LEAD_OUT) throw invalidFieldInCdb(6, 7);
    descriptors = [];
    if (track <= 1) descriptors.push(trackDescriptor(1, 0, msf));
    descriptors.push(trackDescriptor(LEAD_OUT, lu.numBlocks, msf));
  } else if (format === 1) {
    descriptors = [trackDescriptor(1, 0, msf)];
  } else {
    throw invalidFieldInCdb(2, 3);
  }
  const data = Buffer.concat([Buffer.alloc(4), ...descriptors]);
  data.writeUInt16BE(data.length - 2, 0);
  data[2] = 1; // first track (format 0) / first complete session (format 1)
  data[3] = 1; // last track / last complete session
  return clip(data, alloc);
}

// ---- GET EVENT STATUS NOTIFICATION --------------------------------------------------------------------------

const CLASS_MEDIA = 4;
const MEDIA_NO_CHANGE = 0;
const MEDIA_NEW_MEDIA = 2;

/**
 * Polled only (POLLED = 0, asynchronous notification, is refused). Of the event classes only Media is
 * supported. A load by another nexus is reported once as NewMedia: the same condition as the MEDIUM MAY HAVE
 * CHANGED unit attention pending for this nexus, which reporting the event consumes (one change, one report).
 */
export function getEventStatusNotification(ctx: CommandContext): ScsiResult {
  const { cdb, lu, task } = ctx;
  if ((cdb[1] & 0x01) === 0) throw invalidFieldInCdb(1, 0);
  const requested = cdb[4];
  const alloc = cdb.readUInt16BE(7);
  const supported = 1 << CLASS_MEDIA;
  const header = Buffer.alloc(4);
  header[3] = supported;
  if ((requested & supported) === 0) {
    header[2] = 0x80; // NEA: no event of the requested classes is available
    header.writeUInt16BE(2, 0);
    return clip(header, alloc);
  }
  const event = Buffer.alloc(4);
  const changed = lu.mediumPresent && lu.shared.takeCondition(task.nexus, UA.MEDIUM_MAY_HAVE_CHANGED);
  event[0] = changed ? MEDIA_NEW_MEDIA : MEDIA_NO_CHANGE;
  event[1] = lu.mediumPresent ? 0x02 : 0x00; // MEDIA PRESENT; DOOR OR TRAY OPEN = 0 (the tray closes on eject)
  header[2] = CLASS_MEDIA;
  header.writeUInt16BE(2 + event.length, 0);
  return clip(Buffer.concat([header, event]), alloc);
}

// ---- READ DISC INFORMATION ------------------------------------------------------------------------------------

/** Data type 000b (standard disc information): a finalized, non-erasable disc with one complete session. */
export function readDiscInformation(ctx: CommandContext): ScsiResult {
  const { cdb } = ctx;
  if ((cdb[1] & 0x07) !== 0) throw invalidFieldInCdb(1, 2);
  const alloc = cdb.readUInt16BE(7);
  const d = Buffer.alloc(34);
  d.writeUInt16BE(d.length - 2, 0);
  d[2] = 0x0c | 0x02; // STATE OF LAST SESSION 11b (complete), DISC STATUS 10b (finalized), ERASABLE 0
  d[3] = 1; // number of the first track on the disc
  d[4] = 1; // number of sessions (LSB)
  d[5] = 1; // first track in the last session (LSB)
  d[6] = 1; // last track in the last session (LSB)
  d[7] = 0x20; // URU: unrestricted use; no disc ID, no bar code
  d[8] = 0x00; // disc type: CD-DA or CD-ROM (the only value for a non-CD medium as well)
  d.writeUInt32BE(0xffffffff, 16); // last session lead-in start: none (finalized)
  d.writeUInt32BE(0xffffffff, 20); // last possible lead-out start: none
  return clip(d, alloc);
}

// ---- mode pages ---------------------------------------------------------------------------------------------

const readErrorRecoveryPage: ModePage = {
  code: 0x01,
  build() {
    // No retries to tune: an image read either succeeds or fails with MEDIUM ERROR.
    return modePage(0x01, 0x0a);
  },
};

/** MM Capabilities and Mechanical Status (2Ah): reads CD-ROM and DVD-ROM, writes nothing, tray with lock. */
const capabilitiesPage: ModePage = {
  code: 0x2a,
  build(lu, pc) {
    const b = modePage(0x2a, 0x14);
    if (pc === PC_CHANGEABLE) return b;
    b[2] = 0x08; // DVD-ROM READ (CD-ROM reading is implied)
    b[3] = 0x00; // no writing of any kind
    b[4] = 0x00; // no audio play, no multi-session
    b[5] = 0x00; // no CD-DA commands
    b[6] = LOADING_TRAY | EJECT | LOCK | (lu.removalPrevented ? 0x02 : 0); // LOCK STATE
    return b;
  },
};

/** In ascending page code order, as "return all pages" wants them. */
export const MMC_MODE_PAGES: readonly ModePage[] = [readErrorRecoveryPage, capabilitiesPage];
