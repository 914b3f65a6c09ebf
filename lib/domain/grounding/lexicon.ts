import { readFileSync } from 'node:fs';
import wordListPath from 'word-list';

/**
 * Word lists of the claim checker (lib/domain/grounding.ts). Each list says
 * what a word signals in a sales email; none names a fixture's company,
 * person or place, so nothing here is tuned to one context.
 */

const words = (text: string) => new Set(text.trim().split(/\s+/));

/** English words in lower case (sindresorhus/word-list): a capitalised sentence opener in it is an ordinary word, not a name. Static data, read once. */
export const ENGLISH: ReadonlySet<string> = new Set(readFileSync(wordListPath, 'utf8').split('\n'));

/** Function words: never a claim by themselves. */
export const STOPWORDS = words(`
a an the and or but nor so yet if then than that this these those there here where when while which who whom whose what why how
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his she her hers it its they them their theirs
am is are was were be been being have has had having do does did doing will would shall should can could may might must
of in on at by for with about against between into through during before after above below to from up down out off over under
again further once all any both each few more most other some such no not only own same too very just also even still already
as because until unless although though whether either neither per via within without across around among upon onto toward towards
im ive id ill youre youve youd youll were weve wed well theyre theyve its lets dont doesnt didnt isnt arent wasnt werent wont wouldnt
cant couldnt shouldnt hasnt havent hadnt thats whats heres theres whos
nobody everybody somebody anybody everyone someone anyone noone percent plus inside outside
s t re ve ll d m
`);

/**
 * The vocabulary of any sales email: greeting, intent, scheduling, hedging,
 * generic value and the everyday nouns of business. A sentence made only of
 * these (and of the facts' own words) asserts nothing specific about anyone.
 */
export const GENERIC = words(`
hi hello hey dear thanks thank cheers congrats congratulations best regards kind warm sincerely wishes greetings good great nice lovely
note email emails message messages mail line lines reply replies response respond write writing wrote reach reaching reached touch
quick quickly short brief briefly simple simply easy easier easily fast faster happy glad keen excited love like liked likes
want wanted wanting wish hope hoping hoped think thinking thought thoughts guess guessing suspect suspecting imagine imagining assume assuming
wonder wondering wondered curious curiosity interest interested interesting question questions ask asking idea ideas worth worthwhile
sense make makes making made help helps helping helped helpful useful value valuable relevant fit fits fitting match
see seeing saw seen look looking looked looks find finding found notice noticed noticing read reading learn learning learned hear hearing heard
know knowing knew known understand understanding share sharing shared show showing showed shown walk walking through tour explain explaining
send sending sent give giving gave get getting got let letting take taking took try trying tried bring bringing
talk talking chat chatting call calls calling speak speaking conversation conversations discuss discussing connect connecting
meet meeting meetings time times minute minutes min mins hour hours day days week weeks month months morning afternoon evening
today tomorrow tonight soon later sometime next coming upcoming slot slots window windows calendar invite invitation availability available
free open work works working worked suit suits suitable convenient convenience prefer preferred preference option options either alternatively
instead otherwise else someone anyone somebody anybody something anything everything nothing whatever whichever whoever
way ways thing things lot lots bit little much many plenty several various every each kind sort type
team teams people person persons employee employees staff staffer staffers headcount workforce folks group company companies business businesses organisation organization organisations organizations firm firms
industry space market sector field customers customer clients client users user partners
work job jobs role roles day-to-day daily weekly everyday process processes workflow workflows tool tools system systems software platform platforms
straight direct directly juggle juggling juggles focus attention emphasis specialty speciality strength strengths expertise reputation existing current language languages
site sites location locations facility facilities office offices branch branches premises
app apps application applications data information info stack setup integration integrations
product products service services solution solutions feature features approach approaches practice practices result results outcome outcomes
problem problems challenge challenges issue issues pain pains friction headache headaches struggle struggling struggles goal goals priority priorities
cost costs time-consuming manual manually effort efforts overhead spend spending save saves saving savings reduce reducing cut cutting
improve improving improved improvement increase increasing grow growing growth scale scaling scaled efficient efficiency productive productivity
streamline streamlining simplify simplifying automate automating automated automation faster speed better smoother smooth clearer visibility
manage managing management handle handling handled run running keep keeping stay staying track tracking plan planning organise organize
similar same different typical typically usually often sometimes common commonly likely probably perhaps maybe possibly certainly definitely
really truly actually honestly genuinely clearly obviously particularly especially specifically exactly mostly largely
sure certain absolutely totally fully entirely completely pretty fairly quite rather somewhat
new old big small large larger bigger smaller growing busy right wrong real whole full main key core important major minor
first second last final next previous few couple
example examples case cases story stories detail details context background overview summary picture
start starting started begin beginning end ending finish finishing point points step steps stage stages part parts piece pieces
place places area areas side sides level levels number numbers size amount
question answer answers feedback input opinion view views perspective
reason reasons because why purpose
hand hands mind minds eye eyes head heads
`);

/** Words that ask for or schedule the meeting: a sentence built around them is the call to action. */
export const SCHEDULING = words(`
meet meeting call chat talk time minutes minute min mins hour hr session demo walkthrough zoom slot slots calendar invite available availability free open work works suit suits
tuesday monday wednesday thursday friday saturday sunday week morning afternoon evening tomorrow grab book booked hold schedule
`);

/** Past contact between sender and prospect (the thread and calendar are the only ground for these). */
export const INTERACTION_PATTERNS: readonly RegExp[] = [
  /\b(following up|(just|wanted to|i'll|i will|i'd|to) follow up (on|with|about|after)|circl(e|ing) back|checking back|check(ing)? in again|pick(ing)? up where|as promised|as (we|i) (discussed|promised|mentioned|agreed|said)|as discussed|as agreed|as mentioned|per our|reconnect(ing)?|again)\b/i,
  /\b(our|last|recent|earlier|previous) ([a-z-]+ ){0,2}(call|chat|conversation|meeting|demo|talk|discussion|exchange|intro|introduction|session|catch[\s-]?up|coffee|lunch|visit)\b/i,
  /\b(we|i) (last )?(spoke|talked|met|chatted|discussed|connected|caught up|corresponded|emailed|walked through|showed you|demoed)\b/i,
  /\byou('d)? (told|mentioned|said|asked|requested|suggested|proposed|recommended|shared|showed|wrote|emailed|replied|reached out|explained|described|noted|raised|flagged|brought up|let me know|promised|agreed|wanted)\b/i,
  /\b(great|nice|good|lovely|pleasure|fun) (to )?(meet(ing)?|chat(ting)?|speak(ing)?|talk(ing)?|see(ing)?|connect(ing)?|catch(ing)? up)( with)? you\b/i,
  /\bthanks?( you)? (again )?for (your time|the (call|chat|demo|meeting|conversation|reply|response|note|questions?)|taking the time|meeting|speaking|chatting|having me|stopping by|visiting|coming|getting back|your (reply|response|note|question|email|message|interest))/i,
  /\b(at|during|after) the (conference|trade show|tradeshow|expo|summit|webinar|event|booth|meetup|workshop|dinner|panel|roundtable)\b/i,
  /\b(when|since|after|before) (we|i) (last )?(spoke|met|talked|chatted)\b/i,
  /\b(you|we|i) (attended|joined|visited|stopped by|dropped by|ran into|bumped into)\b/i,
  /\b(bump(ed|ing)? into|run(ning)? into|ran into|(saw|see|seeing|met|meeting) you at)\b/i,
  /\b(voicemail|put a (face|voice) to|good to finally)\b/i,
];

/**
 * Ways people meet, as stems, in groups of equivalents: with a real thread, a
 * past contact of one group needs a message or meeting of that group (a call
 * is a chat is a conversation; a visit is not a call).
 */
export const CHANNEL_GROUPS: readonly ReadonlySet<string>[] = [
  // "Conversation" and "exchange" fit an email thread as well as a call: no channel of their own.
  words('call phone chat talk spoke speak zoom video meet met'),
  words('voicemail'),
  words('coffe lunch dinner breakfast visit stop stand booth drink'),
  words('confer tradeshow expo summit webinar event workshop panel roundtabl meetup'),
  words('dm linkedin twitter'),
];

/** Relations between the prospect and other people or organisations. */
export const RELATIONSHIP_PATTERNS: readonly RegExp[] = [
  /\b(colleague|colleagues|co-?workers?|teammates?|boss|bosses|team member|someone (on|from|in) your|a friend|friends?|mutual|introduced (us|me|you)|referr(ed|al)|recommend(ed|ation)|suggested (i|we|that i|that we|you)|pointed me|passed (along )?your name|put (me|us) in touch|connected (us|me)|investors?|board members?|advisors?|advisers?|former (boss|manager|colleague)|alumni|alum|classmates?|we share|brother|sister|wife|husband|spouse|father|mother|son|daughter|cousin|uncle|aunt|in-law|business partner)\b/i,
  /\basked (me|us) to\b/i,
  /\b(official|certified|accredited|premier|preferred|strategic|approved) ([a-z]+ )?(partner|reseller|integrator|vendor|supplier)s?\b/i,
  /\b(partnered|partners|partnership|teamed up) with\b/i,
  /\bone of ([\w&'’-]+'s|their|your|its) (own )?([a-z-]+ )?(customers|clients|partners|suppliers|vendors|investors|backers)\b/i,
  /\byour (ceo|cto|cfo|coo|cio|ciso|cmo|cro|cpo|vp|head|director|manager|founder|co-?founder|president|chief|boss|team lead|lead|partner|assistant)\b[^.?!]{0,60}\b(asked|suggested|mentioned|pointed|told|said|recommended|introduced|referred|wanted|sent|forwarded|shared|flagged|reached out|contacted|wrote|emailed|called)\b/i,
];

/** Roles a sentence may give the prospect. */
export const ROLE_WORDS = words(`
ceo cto cfo coo cio ciso cmo cro cpo cdo chro vp svp evp avp president vice founder cofounder co-founder owner director head manager
lead chief officer engineer architect buyer administrator admin principal partner controller treasurer analyst specialist coordinator
superintendent supervisor chair chairman chairwoman
`);
/** Role acronyms and the words a title spells them with. */
export const ROLE_ACRONYMS: Readonly<Record<string, string>> = {
  ceo: 'chief executive officer',
  cto: 'chief technology officer',
  cfo: 'chief financial officer',
  coo: 'chief operating officer',
  cio: 'chief information officer',
  ciso: 'chief information security officer',
  cmo: 'chief marketing officer',
  cro: 'chief revenue officer',
  cpo: 'chief product officer',
  chro: 'chief human resources officer',
  vp: 'vice president',
  svp: 'senior vice president',
  evp: 'executive vice president',
};

export const ROLE_PATTERNS: readonly RegExp[] = [
  // The sender's own role: only our facts can say it.
  /\b(i'm|i am) (one of |the |a |an )?([\w&'’-]+'s )?(co-?founders?|founder|ceo|cto|cfo|coo|head|vp|director|lead|manager|principal|partner)\b/i,
  /\bi (lead|run|head|manage|own) [^,.;!?]*\b(at|for) (our|us)\b/i,
  /\bas (?:[\w&'’.-]+ ){0,4}?(ceo|cto|cfo|coo|cio|ciso|cmo|cro|cpo|vp|svp|president|founder|co-?founder|owner|director|head|manager|lead|chief|officer|engineer|architect|buyer|administrator|principal|partner|controller|person (who|in charge|responsible))s?\b/i,
  /\byou('re| are) (the |a |an |our )?([a-z-]+ ){0,3}(ceo|cto|cfo|coo|cio|ciso|cmo|cro|cpo|vp|president|founder|co-?founder|owner|director|head|manager|lead|chief|officer|engineer|architect|buyer|administrator|decision[\s-]maker|in charge|responsible)\b/i,
  /\b(your|in your) (role|position|seat|job) as\b/i,
  /\b(since|as|because|given|that|understand|know|hear|heard) you (now |also |currently )?(run|lead|head|own|manage|oversee|direct|chair|are in charge of|are responsible for|sign off|control|handle)\b[^,;.!?]*/i,
  /\byou (own|control|hold|sign off on) the budget\b/i,
];

/** Things that happen to or at a company: each needs a fact. */
export const EVENT_STEMS = words(`
acquisit acquir merger merg fund seri ipo launch unveil announc hire hiring appoint expan expand relocat migrat
rollout rebrand partnership award won layoff restructur reorg downsiz signup regist download attend
trial webinar whitepap ebook subscrib renew deadlin audit certif invest valuat unicorn
promot depart retir pilot upgrad
`);

/** Time words that place a claim in the past or the near future. */
export const TIME_MARKERS = /\b(yesterday|last (week|month|quarter|year|spring|summer|fall|autumn|winter|time)|recently|recent|just (now )?(announced|launched|raised|closed|hired|opened|signed|moved|switched|completed|finished|started|joined|won|published|released|rolled)|earlier this (week|month|quarter|year)|this (past )?(week|month|quarter|year)|next (month|quarter|year|spring|summer|fall|autumn|winter)|(in|by) (q[1-4]|20\d\d)|about to|planning to|plan to|gearing up|in the middle of|currently (rolling|migrating|moving|switching|hiring|expanding|evaluating))\b/i;

/** Use of our product by the prospect: only a HubSpot or Gmail fact can say they are a customer. */
export const OUR_PRODUCT_USAGE: readonly RegExp[] = [
  /\b(you're|you are|you've been|your (team|company|staff|people|firm) (is|are)) (already |still |now )?on (our|us)\b/i,
  /\b(trying( out)?|tried( out)?|testing( out)?|playing with|exploring|use|uses|using|used|rely|relies|relying|run|runs|running|adopted|deployed|rolled out|licensed|bought|purchased|trial(l)?ing|piloting|evaluating|testing|tried|signed up (for|to)|subscribed to|renewed( with)?) (our|us)\b/i,
  /\b(customer|client|user|subscriber|licensee)s? of ours\b/i,
  /\b(already|currently|still)\b[^.!?]{0,50}\b(through|via|with|on|in|using) our\b/i,
  /\b(existing|current|long-?time|longstanding|loyal|valued|returning|former) (customer|client|user|subscriber|account)s?\b/i,
  /\byour (account|subscription|plan|licen[cs]e|licen[cs]es|seats|workspace|instance|trial|renewal|contract|tenant|rollout|pilot|usage|dashboard|integration)( with| on| of)? (us|our)\b/i,
  /\byour (pro|enterprise|premium|starter|growth|business|current|existing) (plan|tier|edition|licen[cs]e|subscription)\b/i,
  /\b(you're|you are|you've been|your team is|your team's) (already |still |currently )?on (the|our|a) ([a-z]+ )?(plan|tier|edition)\b/i,
  /\b(renewed|upgraded|downgraded|signed up|subscribed|activated|onboarded|your (free )?trial|started a (free )?trial|on a (free )?trial)\b/i,
];

/** Use of any product by the prospect: what it names must be in a fact. */
export const USAGE_PATTERNS: readonly RegExp[] = [
  /\b(already|still|currently) (use|uses|using|rely|relies|relying|run|runs|running|work with|works with|on)\b/i,
  /\byou('re| are)? (use|using|run|running|rely on|relying on)\b/i,
];

/** Regional spellings and everyday synonyms, read as one word when matching a fact. */
export const SPELLINGS: Readonly<Record<string, string>> = {
  rota: 'roster',
  rotas: 'rosters',
  organisation: 'organization',
  organisations: 'organizations',
  centre: 'center',
  centres: 'centers',
  programme: 'program',
  programmes: 'programs',
  analyse: 'analyze',
  optimise: 'optimize',
  customise: 'customize',
  text: 'sms',
  texts: 'sms',
  cafe: 'café',
  cafes: 'cafés',
};

/** Multiplicative and collective number words compromise does not read as numbers. */
export const NUMBER_WORDS: Readonly<Record<string, number>> = {
  dozen: 12,
  dozens: 12,
  half: 0.5,
  halved: 0.5,
  double: 2,
  doubled: 2,
  doubling: 2,
  twice: 2,
  triple: 3,
  tripled: 3,
  tripling: 3,
  thrice: 3,
  quadruple: 4,
  quadrupled: 4,
  twofold: 2,
  threefold: 3,
  fourfold: 4,
  fivefold: 5,
  tenfold: 10,
  score: 20,
};

/** Capitalised words that are never a claim: calendar words, time zones, common acronyms of the trade. */
export const NEUTRAL_CAPITALS = words(`
i i'm i've i'd i'll ps p.s p.p.s fyi ok okay re fwd
monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun
january february march april may june july august september october november december jan feb mar apr jun jul aug sep sept oct nov dec
am pm utc gmt est edt cst cdt mst mdt pst pdt bst cet cest eet eest ist aest aedt jst sgt hkt wet west
eastern central pacific mountain time zone
english
usd eur gbp cad mxn aud nzd jpy chf cny inr brl sek nok dkk pln czk sgd hkd zar
pdf pdfs csv csvs xls xlsx doc docs url urls sso mfa vat gst
ai api apis crm crms erp erps it hr roi b2b b2c smb smbs kpi kpis saas sla slas faq faqs q1 q2 q3 q4 eod asap tl;dr
`);
