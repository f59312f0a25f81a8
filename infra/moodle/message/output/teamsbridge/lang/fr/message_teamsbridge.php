<?php
// This file is part of message_teamsbridge, a Moodle message output for moodle-teams-bridge.
//
// It is free software: you can redistribute it and/or modify it under the terms of the GNU General
// Public License as published by the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version. It is distributed WITHOUT ANY WARRANTY; see
// <http://www.gnu.org/licenses/>.


/**
 * Chaînes françaises.
 *
 * @package    message_teamsbridge
 * @copyright  2026 moodle-teams-bridge contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$string['bridgedown'] = 'Le pont Teams n\'a pas pris la notification : {$a}. Elle sera renvoyée.';
$string['bridgeurl'] = 'URL du webhook du pont';
$string['bridgeurl_desc'] = 'Le point d\'entrée des notifications du pont, par exemple https://bridge.example.org/api/webhook. HTTPS est obligatoire, sauf pour un pont sur ce serveur (http://127.0.0.1 ou http://localhost).';
$string['defaulttitle'] = 'Notification Moodle';
$string['pluginname'] = 'Microsoft Teams (pont)';
$string['privacy:metadata:contexturl'] = 'Le lien vers la page dont parle la notification.';
$string['privacy:metadata:fullmessage'] = 'Le texte de la notification.';
$string['privacy:metadata:subject'] = 'L\'objet de la notification.';
$string['privacy:metadata:teamsbridge'] = 'Les notifications envoyées vers Microsoft Teams passent par le pont Teams de l\'établissement, qui les remet à l\'utilisateur dans Teams.';
$string['privacy:metadata:userid'] = 'L\'identifiant Moodle de l\'utilisateur destinataire.';
$string['secret'] = 'Secret partagé';
$string['secret_desc'] = 'La même valeur que WEBHOOK_SECRET dans les réglages du pont (au moins 16 caractères). Chaque notification est signée avec (HMAC-SHA256) ; il n\'est jamais envoyé.';
$string['tasksend'] = 'Envoyer une notification au pont Teams';
$string['timeout'] = 'Délai (secondes)';
$string['timeout_desc'] = 'Combien de temps une page attend le pont (1 à 30 secondes). Une notification que le pont ne prend pas à temps est mise en file et renvoyée par le cron.';
